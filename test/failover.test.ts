// Proves issue 4 on a real three-node cluster under `parley up`, with processes killed for real:
// under a black-box writer, kill -9 of the primary's PostgreSQL and agent → another node takes
// over, writes come back, and every acknowledged message is stored exactly once with no seq gap;
// a standby killed alone does not stop writes; the old primary rejoins as a standby; the primary's
// PostgreSQL killed alone comes back; with both standbys dead sends are refused at once, never
// acknowledged, and resume when a standby returns.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../src/postgres/postgres.ts';
import { cleanUp, cli, freePortRun, makeDir, startUp, waitUntil, waitUp, type Up } from './harness.ts';
import { assertExactlyOnce, clusterStatus } from './cluster.ts';
import { gapAround, startWriter } from './writer.ts';

after(cleanUp);

/** A query (and a commit waiting for a standby) is given up after 2 s and answered 503. */
const queryTimeoutMs = 2000;
const clusterEnv = { PARLEY_CLUSTER_NODES: '3', PARLEY_HTTP_RATE_LIMIT_PER_MINUTE: '1000000', PARLEY_DATA_QUERY_TIMEOUT_MS: String(queryTimeoutMs) };

describe('a three-node cluster under parley up', () => {
  let dir = '';
  let url = '';
  let up: Up;
  const status = () => clusterStatus(dir);
  const kill = (pid: number | null) => {
    if (pid) process.kill(pid, 'SIGKILL');
  };

  before(async () => {
    dir = join(makeDir(), 'state');
    const port = await freePort();
    const pgPort = await freePortRun(3);
    up = startUp(dir, port, pgPort, clusterEnv);
    await waitUp(up, dir);
    url = `http://127.0.0.1:${port}`;
  });

  test('starts one primary and two streaming quorum standbys', async () => {
    await waitUntil('both standbys stream as quorum standbys', async () => {
      const s = await status();
      return s.primary === 'node1' && s.nodes.filter((n) => n.role === 'standby' && n.sync === 'quorum').length === 2;
    }, 60_000);
    const s = await status();
    assert.equal(s.lease?.holder, 'node1');
    assert.ok(s.nodes.every((n) => n.pid && n.agentPid));
  });

  test('kill -9 of the primary PostgreSQL alone: its agent starts it again and writes go on', async () => {
    const writer = await startWriter(url);
    await writer.waitForAcks(10, 30_000);
    const before = await status();
    const primary = before.nodes.find((n) => n.name === before.primary)!;
    const killedAt = Date.now();
    kill(primary.pid);
    await writer.waitForAcks(20, 60_000);
    const report = await writer.stop();
    console.log(`# writes restored ${gapAround(report, killedAt)} ms after kill -9 of ${primary.name}'s PostgreSQL`);
    assertExactlyOnce(report, await writer.history());
    assert.ok(report.failures.every((f) => f.status !== 500), JSON.stringify(report.failures.slice(0, 5)));
    await waitUntil('a primary holds the lease and both standbys stream again', async () => {
      const s = await status();
      return s.primary !== null && s.lease?.holder === s.primary && s.nodes.filter((n) => n.role === 'standby' && n.sync === 'quorum').length === 2;
    }, 60_000);
    const journal = readFileSync(join(dir, 'journal.jsonl'), 'utf8');
    assert.match(journal, new RegExp(`"node":"${primary.name}","kind":"action","action":"start","result":"done"`));
  });

  test('kill -9 of the primary PostgreSQL and its agent: a standby takes over, nothing acknowledged is lost', async () => {
    const writer = await startWriter(url);
    await writer.waitForAcks(20, 30_000);
    const before = await status();
    const old = before.nodes.find((n) => n.name === before.primary)!;
    const killedAt = Date.now();
    kill(old.agentPid);
    kill(old.pid);
    await writer.waitForAcks(20, 60_000);
    const report = await writer.stop();
    const gapMs = gapAround(report, killedAt);
    console.log(`# writes restored ${gapMs} ms after kill -9 of ${old.name} (failures meanwhile: ${report.failures.length})`);
    assertExactlyOnce(report, await writer.history());
    await waitUntil('a new primary holds the lease and the old one rejoined as a standby', async () => {
      const s = await status();
      return s.primary !== null && s.lease?.holder === s.primary && s.nodes.find((n) => n.name === old.name)?.role === 'standby';
    }, 60_000);
    // 503s while there was no primary carried Retry-After; nothing answered 500.
    assert.ok(report.failures.every((f) => f.status !== 500), JSON.stringify(report.failures.slice(0, 5)));
    assert.ok(report.failures.filter((f) => f.status === 503).every((f) => f.retryAfter !== null));
    const journal = readFileSync(join(dir, 'journal.jsonl'), 'utf8');
    assert.match(journal, /"action":"promote","result":"done"/);
    // The app server rode through it: its connections to the dead primary failed, it did not.
    assert.doesNotMatch(up.output(), /app server \d+: exited/);
  });

  test('kill -9 of one standby PostgreSQL: writes go on (ANY 1 of 2), and it comes back', async () => {
    const s = await status();
    const standby = s.nodes.find((n) => n.role === 'standby')!;
    const writer = await startWriter(url);
    await writer.waitForAcks(5, 30_000);
    kill(standby.pid);
    await writer.waitForAcks(30, 30_000);
    const report = await writer.stop();
    assertExactlyOnce(report, await writer.history());
    await waitUntil(`${standby.name} streams again`, async () => (await status()).nodes.find((n) => n.name === standby.name)?.sync === 'quorum', 60_000);
  });

  test('kill -9 of both standbys: sends are refused with 503 and Retry-After, none acknowledged, and resume when a standby returns', async () => {
    const s = await status();
    const standbys = s.nodes.filter((n) => n.role === 'standby');
    assert.equal(standbys.length, 2);
    const writer = await startWriter(url);
    await writer.waitForAcks(5, 30_000);
    // Their agents are paused so that the standbys stay dead; the supervisor sees them alive.
    for (const n of standbys) process.kill(n.agentPid!, 'SIGSTOP');
    let killedAt = 0;
    let returnedAt = 0;
    try {
      for (const n of standbys) kill(n.pid);
      killedAt = Date.now();
      await waitUntil('five sends refused', async () => writer.report.failures.filter((f) => f.atMs > killedAt).length >= 5, 60_000);
      returnedAt = Date.now();
    } finally {
      for (const n of standbys) process.kill(n.agentPid!, 'SIGCONT');
    }
    await writer.waitForAcks(10, 60_000);
    const report = await writer.stop();
    // A send in flight at the kill may have been confirmed just before it; none after a moment.
    const ackedWhileDown = report.acked.filter((a) => a.atMs > killedAt + 500 && a.atMs <= returnedAt);
    assert.deepEqual(ackedWhileDown, [], 'nothing is acknowledged while no standby can confirm it');
    const refused = report.failures.filter((f) => f.atMs > killedAt && f.atMs <= returnedAt);
    assert.ok(refused.every((f) => f.status === 503 && f.retryAfter !== null), JSON.stringify(refused.slice(0, 5)));
    const slowest = Math.max(...refused.map((f) => f.tookMs));
    console.log(`# with both standbys dead, ${refused.length} sends were refused, the slowest after ${slowest} ms (query timeout ${queryTimeoutMs} ms)`);
    // Answered, not hung: each refusal came from the server, long before the writer's own 10 s limit.
    assert.ok(refused.every((f) => f.tookMs < 10_000));
    assertExactlyOnce(report, await writer.history());
  });

  test('down and up again: the same primary, all data', async () => {
    const s = await status();
    const writer = await startWriter(url);
    await writer.waitForAcks(5, 30_000);
    const report = await writer.stop();
    assert.equal((await cli(['down', '--dir', dir])).code, 0);
    await waitUntil('parley up has exited', async () => up.child.exitCode !== null);
    const port = Number(new URL(url).port);
    const pgPort = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')).members[0].port as number;
    up = startUp(dir, port, pgPort, clusterEnv);
    await waitUp(up, dir);
    assert.equal((await status()).primary, s.primary);
    assertExactlyOnce(report, await writer.history());
    assert.equal((await cli(['down', '--dir', dir])).code, 0);
  });
});
