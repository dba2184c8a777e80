// Proves `parley drill july-30` against a real three-node cluster with two app servers: every step
// keeps its invariant (no failover during maintenance, the replication alert fires, the failover
// ends), the checker finds nothing lost, duplicated or out of order among the sends its users were
// told of, and the journal then reads as an incident holding the automatic failover, which exports
// as a postmortem draft. The drill's timing targets are reported, not asserted (a slow machine is
// not a wrong one).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cleanUp, cli } from './harness.ts';
import { clusterStatus, startCluster } from './cluster.ts';

after(cleanUp);

describe('parley drill july-30', () => {
  let dir = '';

  before(async () => {
    ({ dir } = await startCluster({ PARLEY_APP_SERVERS: '2' }));
  });

  test('bad input is one line and exit 2 or 1, with nothing started', async () => {
    for (const [args, pattern] of [
      [['drill', 'june-1', '--dir', dir], /no drill "june-1"; the drills are: july-30/],
      [['drill', 'july-30', '--users', '1', '--dir', dir], /--users: a whole number from 2 to 200/],
      [['drill', 'july-30', '--duration', 'soon', '--dir', dir], /--duration must be a whole number/],
    ] as const) {
      const answer = await cli([...args]);
      assert.notEqual(answer.code, 0);
      assert.match(answer.stderr, pattern);
      assert.equal(answer.stderr.trim().split('\n').length, 1, answer.stderr);
    }
  });

  test('the drill keeps every invariant and loses nothing; the journal reads as an incident with the automatic failover', async () => {
    const before = await clusterStatus(dir);
    const run = await cli(['drill', 'july-30', '--users', '6', '--duration', '3', '--json', '--dir', dir]);
    const report = JSON.parse(run.stdout) as any;
    for (const t of report.targets) console.log(`# ${t.met ? 'met' : 'NOT MET'}: ${t.what}: ${t.measured} (target ${t.target})`);
    assert.deepEqual(
      report.steps.map((s: any) => [s.name, s.ok]),
      [
        ['steady', true],
        ['maintenance, and the primary dies during it', true],
        ['replication stops on a standby', true],
        ['a burst: every user sends without pause', true],
        ['the primary dies, no maintenance', true],
      ],
      JSON.stringify(report.steps, null, 1),
    );
    assert.equal(report.steps[1].figures.promotionsDuringMaintenance, 0);
    assert.equal(report.check.lost.length, 0);
    assert.equal(report.check.duplicated.length, 0);
    assert.equal(report.check.gaps.length, 0);
    assert.equal(report.check.mismatched.length, 0);
    assert.ok(report.check.acknowledged > 50, `only ${report.check.acknowledged} sends acknowledged`);
    assert.equal(report.sends.answeredWith5xxOtherThan503, 0);
    assert.equal(report.passed, true);
    assert.equal(run.code, 0, run.stderr);
    const after = await clusterStatus(dir);
    assert.notEqual(after.primary, before.primary, 'the last step failed the primary over');

    const incidents = await cli(['incidents', '--json', '--dir', dir]);
    assert.equal(incidents.code, 0, incidents.stderr);
    const withFailover = (JSON.parse(incidents.stdout).incidents as any[]).find((i) => i.promotions.some((p: any) => !p.planned && p.node === after.primary));
    assert.ok(withFailover, incidents.stdout.slice(0, 3000));
    const draft = await cli(['incidents', 'export', withFailover.id, '--dir', dir]);
    assert.equal(draft.code, 0, draft.stderr);
    assert.match(draft.stdout, new RegExp(`${after.primary} promoted to primary \\(automatic failover\\)`));
  });
});
