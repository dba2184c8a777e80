// Proves issue 5's switchover on a real three-node cluster under `parley up`: refusals name the
// failed pre-check; under a black-box writer a switchover makes the target primary with a short
// pause and nothing lost or duplicated, and the old primary follows without a rewind; a target
// whose WAL receiver is frozen makes it roll back with the old primary still taking writes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cleanUp, cli, waitUntil, type Up } from './harness.ts';
import { assertExactlyOnce, clusterHealthy, clusterStatus, startCluster } from './cluster.ts';
import { startWriter, type WriterReport } from './writer.ts';

after(cleanUp);

/** The longest time between two acknowledgements while `from`–`to` (the write pause a client saw). */
function longestPause(report: WriterReport, fromMs: number, toMs: number): number {
  const times = report.acked.map((a) => a.atMs).filter((t) => t >= fromMs - 1000 && t <= toMs + 1000);
  let longest = 0;
  for (let i = 1; i < times.length; i++) longest = Math.max(longest, times[i]! - times[i - 1]!);
  return longest;
}

describe('switchover on a three-node cluster', () => {
  let dir = '';
  let url = '';
  let up: Up;
  const status = () => clusterStatus(dir);
  const healthy = () => clusterHealthy(dir);

  before(async () => {
    ({ dir, url, up } = await startCluster());
  });

  test('refusals name the failed check, one line, and change nothing', async () => {
    const s = await status();
    const cases: Array<[string[], number, RegExp]> = [
      [['switchover', '--to', 'node9', '--reason', 'x'], 1, /failed check: the target: there is no node "node9"/],
      [['switchover', '--to', s.primary!, '--reason', 'x'], 1, /failed check: the target: node1 is the primary already/],
      [['switchover', '--to', 'node2'], 2, /required option '--reason <text>'/],
    ];
    for (const [args, code, expected] of cases) {
      const answer = await cli([...args, '--dir', dir]);
      assert.equal(answer.code, code, `${args.join(' ')}: ${answer.stderr}`);
      assert.match(answer.stderr, expected);
      assert.equal(answer.stderr.trim().split('\n').length, 1);
    }
    assert.equal((await cli(['maintenance', 'start', '--reason', 'in the way', '--dir', dir])).code, 0);
    const blocked = await cli(['switchover', '--to', 'node2', '--reason', 'x', '--dir', dir]);
    assert.equal(blocked.code, 1);
    assert.match(blocked.stderr, /failed check: no maintenance in the way/);
    assert.equal((await cli(['maintenance', 'stop', '--reason', 'done', '--dir', dir])).code, 0);
    assert.equal((await status()).primary, s.primary);
  });

  test('under a steady writer the target becomes primary, nothing is lost or duplicated, the old primary follows without rewind', async () => {
    const writer = await startWriter(url);
    await writer.waitForAcks(20, 30_000);
    const before = await status();
    const target = before.nodes.find((n) => n.role === 'standby')!.name;
    const startedAt = Date.now();
    const answer = await cli(['switchover', '--to', target, '--reason', 'planned move', '--dir', dir]);
    const endedAt = Date.now();
    assert.equal(answer.code, 0, answer.stderr);
    assert.match(answer.stdout, new RegExp(`switchover done: ${target} is the primary`));
    await writer.waitForAcks(20, 30_000);
    const report = await writer.stop();
    console.log(`# switchover to ${target}: longest pause between acknowledged sends ${longestPause(report, startedAt, endedAt)} ms; ${report.failures.length} sends refused and retried`);
    assertExactlyOnce(report, await writer.history());
    // The app server held the sends until the new primary answered: a pause, not errors.
    const appErrors = () =>
      readFileSync(join(dir, 'logs', `app-${new URL(url).port}.log`), 'utf8')
        .split('\n')
        .filter((line) => line.includes('"level":50'))
        .join('\n');
    assert.deepEqual(report.failures, [], `no send was refused during the switchover; app server errors:\n${appErrors()}`);
    await waitUntil('the old primary streams from the new one', healthy, 60_000);
    assert.equal((await status()).primary, target);
    const journal = readFileSync(join(dir, 'journal.jsonl'), 'utf8');
    assert.match(journal, /"kind":"switchover","outcome":"handed over"/);
    assert.doesNotMatch(journal.slice(journal.indexOf('"outcome":"handed over"')), new RegExp(`"node":"${before.primary}","kind":"action","action":"rewind"`));
  });

  test('a target whose WAL receiver is frozen: the switchover rolls back and the primary keeps taking writes', async () => {
    await waitUntil('healthy', healthy, 60_000);
    const before = await status();
    const target = before.nodes.find((n) => n.role === 'standby')!;
    const receiver = execFileSync('ps', ['-o', 'pid=,ppid=,args=', '-e'], { encoding: 'utf8' })
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .find((cols) => Number(cols[1]) === target.pid && cols.slice(2).join(' ').includes('walreceiver'));
    assert.ok(receiver, `a walreceiver under ${target.name}'s postmaster`);
    const writer = await startWriter(url);
    await writer.waitForAcks(10, 30_000);
    process.kill(Number(receiver[0]), 'SIGSTOP');
    let answer;
    try {
      answer = await cli(['switchover', '--to', target.name, '--reason', 'to a frozen target', '--dir', dir]);
    } finally {
      process.kill(Number(receiver[0]), 'SIGCONT');
    }
    assert.equal(answer.code, 1);
    assert.match(answer.stderr, new RegExp(`switchover to ${target.name} rolled back: .*; ${before.primary} is still the primary`));
    await writer.waitForAcks(10, 30_000);
    const report = await writer.stop();
    assertExactlyOnce(report, await writer.history());
    assert.equal((await status()).primary, before.primary, `${answer.stdout}${answer.stderr}`);
    assert.equal((await cli(['down', '--dir', dir])).code, 0);
  });
});
