// `npm run bench:failover` (also the last part of `npm run bench`): issue 4's failover figure. On a
// three-node `parley up` in a temporary directory, a black-box writer sends through the public API
// (test/writer.ts: each message retried with its clientMessageId until acknowledged) while the
// primary's PostgreSQL and agent are killed with kill -9, --repeat times (default 10). Each run
// measures the time from the kill to the acknowledgement of the first send begun after it, and checks the
// writer's conversation afterwards: acknowledged messages missing (lost) or stored twice
// (duplicated), and seq gaps. The old primary must rejoin as a standby before the next run.
// The figures go into docs/benchmarks.md between the bench-failover markers, with the machine.
// Everything started is stopped on every path (test/harness.ts cleanUp), and the run is bounded.
import { copyFileSync, mkdirSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/config.ts';
import { findPgBinaries, freePort } from '../src/postgres/postgres.ts';
import { cleanUp, cli, freePortRun, makeDir, startUp, waitUntil, waitUp } from '../test/harness.ts';
import { clusterHealthy, clusterStatus } from '../test/cluster.ts';
import { startWriter } from '../test/writer.ts';
import { writeReport } from './bench/report.ts';
import { median } from './bench/stats.ts';

const repoDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const reportFile = join(repoDir, 'docs', 'benchmarks.md');
const markers = { start: '<!-- bench-failover:start -->', end: '<!-- bench-failover:end -->' };
// Targets of issue 4.
const targetMedianMs = 5_000;
const targetWorstMs = 10_000;
// Bounds: the whole run, one cluster becoming healthy, one failover.
const runDeadlineMs = 15 * 60_000;
const healthyTimeoutMs = 90_000;
const recoverTimeoutMs = 60_000;

interface Run {
  killed: string;
  restoredMs: number;
  refusals: number;
  lost: number;
  duplicated: number;
  gaps: number;
}

const { values } = parseArgs({ options: { repeat: { type: 'string', default: '10' }, switchovers: { type: 'string', default: '6' } } });
function count(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 100) {
    process.stderr.write(`bench-failover: --${name} must be a whole number from 1 to 100, got "${text}"\n`);
    process.exit(2);
  }
  return n;
}
const repeat = count('repeat', values.repeat);
const switchovers = count('switchovers', values.switchovers);
// Issue 5's target for the write pause of a switchover.
const targetSwitchoverPauseMs = 2_000;

const started = Date.now();
const log = (line: string): void => void process.stdout.write(`[failover ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
const deadline = setTimeout(() => {
  log(`stopping: the run passed its ${runDeadlineMs / 60_000} min bound`);
  void cleanUp().finally(() => process.exit(1));
}, runDeadlineMs);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping the cluster`);
    void cleanUp().finally(() => process.exit(1));
  });
}

async function main(): Promise<void> {
  const dir = join(makeDir(), 'state');
  const port = await freePort();
  const pgPort = await freePortRun(3);
  const up = startUp(dir, port, pgPort, { PARLEY_CLUSTER_NODES: '3', PARLEY_HTTP_RATE_LIMIT_PER_MINUTE: '1000000' });
  await waitUp(up, dir);
  const url = `http://127.0.0.1:${port}`;
  const status = () => clusterStatus(dir);
  const healthy = () => clusterHealthy(dir);
  const runs: Run[] = [];
  for (let i = 1; i <= repeat; i++) {
    await waitUntil('one primary with the lease and two quorum standbys', healthy, healthyTimeoutMs);
    const writer = await startWriter(url);
    await writer.waitForAcks(20, recoverTimeoutMs);
    const before = await status();
    const primary = before.nodes.find((n) => n.name === before.primary)!;
    const killedAt = Date.now();
    for (const pid of [primary.agentPid, primary.pid]) if (pid) process.kill(pid, 'SIGKILL');
    await writer.waitForAcks(20, recoverTimeoutMs);
    const report = await writer.stop();
    // A send already under way at the kill may still be acknowledged by the old primary; the first
    // one begun after the kill is what tells that writes are back.
    const firstAfter = report.acked.find((a) => a.startedMs > killedAt)!;
    const stored = await writer.history();
    const storedIds = new Map<string, number>();
    for (const m of stored) storedIds.set(m.clientMessageId, (storedIds.get(m.clientMessageId) ?? 0) + 1);
    const run: Run = {
      killed: primary.name,
      restoredMs: firstAfter.atMs - killedAt,
      refusals: report.failures.filter((f) => f.atMs > killedAt).length,
      lost: report.acked.filter((a) => !storedIds.has(a.clientMessageId)).length,
      duplicated: [...storedIds.values()].filter((n) => n > 1).length,
      gaps: stored.filter((m, index) => m.seq !== index + 1).length,
    };
    runs.push(run);
    log(`run ${i}/${repeat} (kill at ${new Date(killedAt).toISOString()}): killed ${run.killed}; first acknowledged send ${run.restoredMs} ms later (${run.refusals} refused meanwhile); lost ${run.lost}, duplicated ${run.duplicated}, seq gaps ${run.gaps}`);
  }
  await waitUntil('the last old primary rejoined', healthy, healthyTimeoutMs);
  const pauses: Array<{ to: string; pauseMs: number; lost: number; duplicated: number }> = [];
  for (let i = 1; i <= switchovers; i++) {
    await waitUntil('one primary with the lease and two quorum standbys', healthy, healthyTimeoutMs);
    const writer = await startWriter(url);
    await writer.waitForAcks(20, recoverTimeoutMs);
    const before = await status();
    const to = before.nodes.find((n) => n.role === 'standby')!.name;
    const startedAt = Date.now();
    const answer = await cli(['switchover', '--to', to, '--reason', `bench run ${i}`, '--dir', dir]);
    if (answer.code !== 0) throw new Error(`switchover ${i} to ${to} failed: ${answer.stderr.trim()}`);
    await writer.waitForAcks(20, recoverTimeoutMs);
    const report = await writer.stop();
    // The pause a client saw: the longest gap between acknowledgements around the switchover.
    const times = report.acked.map((a) => a.atMs).filter((t) => t >= startedAt - 1000);
    let pauseMs = 0;
    for (let k = 1; k < times.length; k++) pauseMs = Math.max(pauseMs, times[k]! - times[k - 1]!);
    const stored = await writer.history();
    const ids = new Set(stored.map((m) => m.clientMessageId));
    pauses.push({ to, pauseMs, lost: report.acked.filter((a) => !ids.has(a.clientMessageId)).length, duplicated: stored.length - ids.size });
    log(`switchover ${i}/${switchovers} to ${to}: longest pause between acknowledged sends ${pauseMs} ms; lost ${pauses.at(-1)!.lost}, duplicated ${pauses.at(-1)!.duplicated}`);
  }
  await cli(['down', '--dir', dir]);
  keepJournal(dir);
  writeReport(reportFile, render(runs, pauses), markers);
  log(`wrote ${reportFile}`);
}

/** The cluster's journal outlives the run in test-artifacts/ (not in git): why a failover was slow. */
function keepJournal(dir: string): void {
  const artifacts = join(repoDir, 'test-artifacts');
  mkdirSync(artifacts, { recursive: true });
  const target = join(artifacts, 'bench-failover-journal.jsonl');
  copyFileSync(join(dir, 'journal.jsonl'), target);
  log(`the cluster's journal is in ${target}`);
}

function render(runs: Run[], pauses: Array<{ to: string; pauseMs: number; lost: number; duplicated: number }>): string {
  const pauseMedian = median(pauses.map((p) => p.pauseMs));
  const pauseWorst = Math.max(...pauses.map((p) => p.pauseMs));
  const times = runs.map((r) => r.restoredMs);
  const med = median(times);
  const worst = Math.max(...times);
  const lost = runs.reduce((n, r) => n + r.lost, 0);
  const duplicated = runs.reduce((n, r) => n + r.duplicated, 0);
  const gaps = runs.reduce((n, r) => n + r.gaps, 0);
  const config = loadConfig({ env: {} });
  const cpu = cpus();
  const verdict = (ok: boolean): string => (ok ? 'met' : '**missed**');
  return [
    markers.start,
    '<!-- Generated by `npm run bench:failover` (scripts/bench-failover.ts); edits inside this block are overwritten. -->',
    '',
    `### Failover and switchover on a three-node cluster (${new Date().toISOString().slice(0, 10)})`,
    '',
    "Failover: kill -9 of the primary's PostgreSQL and agent.",
    '',
    `Machine: ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}, Node ${process.version}, PostgreSQL ${findPgBinaries().major}.`,
    `Cluster: \`parley up\` with 3 nodes (ANY 1 of 2 standbys), lease TTL ${config.cluster.leaseTtlMs} ms, agent loop ${config.cluster.loopIntervalMs} ms; one writer through the public API, each message retried with its clientMessageId every 100 ms until acknowledged.`,
    '',
    '| figure | value | target |',
    '|---|---|---|',
    `| time from kill -9 to the acknowledgement of the first send begun after it, median of ${runs.length} | **${(med / 1000).toFixed(2)} s** | ≤ ${targetMedianMs / 1000} s: ${verdict(med <= targetMedianMs)} |`,
    `| the same, worst | **${(worst / 1000).toFixed(2)} s** | ≤ ${targetWorstMs / 1000} s: ${verdict(worst <= targetWorstMs)} |`,
    `| acknowledged messages lost / duplicated (all runs) | **${lost} / ${duplicated}** | 0 / 0: ${verdict(lost === 0 && duplicated === 0)} |`,
    `| seq gaps in the writer's conversation | ${gaps} | 0 |`,
    '',
    `Each run: ${runs.map((r) => `${r.killed} ${(r.restoredMs / 1000).toFixed(2)} s`).join(', ')}.`,
    'A run near 0 s is a send begun just after the kill that the dying primary still committed: its backends outlive a postmaster killed with -9 for a moment, and a standby confirmed the commit, so it is durable (the takeover proof includes it). The cluster\'s journal of the last run is kept in `test-artifacts/bench-failover-journal.jsonl`.',
    '',
    `### Switchover: \`parley switchover --to\` a standby under the same writer`,
    '',
    '| figure | value | target |',
    '|---|---|---|',
    `| longest pause between acknowledged sends, median of ${pauses.length} | **${(pauseMedian / 1000).toFixed(2)} s** | ≤ ${targetSwitchoverPauseMs / 1000} s: ${verdict(pauseMedian <= targetSwitchoverPauseMs)} |`,
    `| the same, worst | **${(pauseWorst / 1000).toFixed(2)} s** | ≤ ${targetSwitchoverPauseMs / 1000} s: ${verdict(pauseWorst <= targetSwitchoverPauseMs)} |`,
    `| acknowledged messages lost / duplicated | **${pauses.reduce((n, p) => n + p.lost, 0)} / ${pauses.reduce((n, p) => n + p.duplicated, 0)}** | 0 / 0 |`,
    '',
    `Each switchover: ${pauses.map((p) => `to ${p.to} ${(p.pauseMs / 1000).toFixed(2)} s`).join(', ')}. The writer retries a refused send every 100 ms, so a pause is counted to the nearest 100 ms or so.`,
    markers.end,
  ].join('\n');
}

main()
  .catch((error: unknown) => {
    process.stderr.write(`bench-failover: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    clearTimeout(deadline);
    await cleanUp();
  });
