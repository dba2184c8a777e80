// Helpers for tests (and the failover benchmark) that run a replicated cluster under `parley up`:
// its status as `parley status --json` gives it, "healthy", and the exactly-once check of a
// black-box writer's conversation.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../src/postgres/postgres.ts';
import { cli, freePortRun, makeDir, startUp, waitUntil, waitUp, type Up } from './harness.ts';
import type { WriterReport } from './writer.ts';

/** The parts of `parley status --json` (docs/cli.md) these tests read. */
export interface ClusterStatus {
  primary: string | null;
  maintenance: { reason: string; owner: string; since: string; expiresAt: string; node: string | null } | null;
  lease: { holder: string; active: boolean } | null;
  nodes: Array<{ name: string; role: string; state: string; pid: number | null; agentPid: number | null; lagBytes: number | null; sync: string | null }>;
}

/** `parley status --json --dir DIR`, which must succeed. */
export async function clusterStatus(dir: string): Promise<ClusterStatus> {
  const answer = await cli(['status', '--json', '--dir', dir]);
  assert.equal(answer.code, 0, answer.stderr);
  return JSON.parse(answer.stdout) as ClusterStatus;
}

/** A primary holding the lease, and every other node a standby streaming in the quorum. */
export async function clusterHealthy(dir: string): Promise<boolean> {
  const s = await clusterStatus(dir);
  return s.primary !== null && s.lease?.holder === s.primary && s.nodes.every((n) => n.name === s.primary || (n.role === 'standby' && n.sync === 'quorum'));
}

/** Seq 1..n with no gap, each clientMessageId stored once, and every acknowledged message stored as acknowledged. */
export function assertExactlyOnce(report: WriterReport, stored: Array<{ id: string; seq: number; clientMessageId: string }>): void {
  assert.deepEqual(stored.map((m) => m.seq), stored.map((_, i) => i + 1), 'seq 1..n with no gap');
  const byClientId = new Map(stored.map((m) => [m.clientMessageId, m]));
  assert.equal(byClientId.size, stored.length, 'each clientMessageId stored once');
  for (const ack of report.acked) {
    const m = byClientId.get(ack.clientMessageId);
    assert.ok(m, `acknowledged message ${ack.clientMessageId} (seq ${ack.seq}) is stored`);
    assert.equal(m.id, ack.id);
  }
}

/** A three-node `parley up` in a fresh directory, healthy; `env` adds to the test settings. */
export async function startCluster(env: NodeJS.ProcessEnv = {}): Promise<{ dir: string; url: string; up: Up }> {
  const dir = join(makeDir(), 'state');
  const servers = Number(env.PARLEY_APP_SERVERS ?? 1);
  const port = servers > 1 ? await freePortRun(servers) : await freePort();
  const up = startUp(dir, port, await freePortRun(3), { PARLEY_CLUSTER_NODES: '3', PARLEY_HTTP_RATE_LIMIT_PER_MINUTE: '1000000', ...env });
  await waitUp(up, dir);
  await waitUntil('one primary and two quorum standbys', () => clusterHealthy(dir), 60_000);
  return { dir, url: `http://127.0.0.1:${port}`, up };
}

/** DIR/journal.jsonl as objects, oldest first. */
export function readJournal(dir: string): Array<Record<string, unknown>> {
  return readFileSync(join(dir, 'journal.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The child of a postmaster whose command line names `kind` (walreceiver, startup, …), for faults. */
export { postmasterChild } from '../src/drills/drills.ts';
