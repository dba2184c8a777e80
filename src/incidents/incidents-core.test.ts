// Proves the journal is read as people would read it: an incident opens with the first critical
// signal (a critical alert, an automatic promotion, the supervisor's AlertingSilent), takes in the
// pages, acknowledgements, failover steps and operators' actions while open (and what operators
// did in the 10 minutes before: its lead-up), stays one incident
// while a critical alert flaps within the quiet time, and ends when the last critical signal
// cleared; warnings alone and an operator's switchover make none. Properties over random journals:
// every critical firing lies in exactly one incident, incidents do not overlap, and the order the
// processes appended in does not matter. The postmortem draft follows the seed's sections.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { buildIncidents, publicIncident, type JournalEntry } from './incidents-core.ts';
import { duration, renderPostmortem } from './postmortem-core.ts';

const quietMs = 5 * 60_000;
const t0 = Date.parse('2026-11-24T00:50:00.000Z');
const at = (seconds: number): string => new Date(t0 + seconds * 1000).toISOString();
const alert = (seconds: number, event: 'firing' | 'resolved' | 'pending', name: string, severity: string, node: string | null, id = `${name}:${node ?? ''}`): JournalEntry => ({
  at: at(seconds),
  kind: 'alert',
  event,
  id,
  name,
  severity,
  node,
  summary: `${name} summary`,
});

/** A night like the postmortem's, as Parley would journal it. */
function night(): JournalEntry[] {
  return [
    { at: at(-600), kind: 'agent', node: 'node1', event: 'started', pid: 1 },
    { at: at(-590), kind: 'decision', node: 'node1', reason: 'renewing the lease', actions: ['renewLease'] },
    // A warning that comes and goes: no incident.
    alert(-500, 'firing', 'ReplicationLagGrowing', 'warning', 'node3'),
    alert(-400, 'resolved', 'ReplicationLagGrowing', 'warning', 'node3'),
    { at: at(-60), kind: 'operator', node: null, action: 'maintenance start', by: 'root@vm', reason: 'kernel upgrade' },
    { at: at(-59), kind: 'maintenance', node: 'node1', event: 'acknowledged', reason: 'kernel upgrade' },
    // The incident: replication stops, on-call is paged and acknowledges, it flaps, it ends.
    alert(0, 'firing', 'ReplicationStopped', 'critical', 'node2'),
    alert(1, 'firing', 'ReplicationLagGrowing', 'warning', 'node2'),
    { at: at(0.02), kind: 'alerting-notify', alertId: 'ReplicationStopped:node2', notice: 'page', level: 0, round: 0, person: 'alice', channels: ['email', 'webhook'] },
    { at: at(120), kind: 'alerting-notify', alertId: 'ReplicationStopped:node2', notice: 'page', level: 1, round: 0, person: 'bob', channels: ['email'] },
    { at: at(150), kind: 'alerting-ack', alertId: 'ReplicationStopped:node2', by: 'bob', via: 'cli' },
    alert(300, 'resolved', 'ReplicationStopped', 'critical', 'node2'),
    alert(400, 'firing', 'ReplicationStopped', 'critical', 'node2'),
    alert(500, 'resolved', 'ReplicationStopped', 'critical', 'node2'),
    alert(510, 'resolved', 'ReplicationLagGrowing', 'warning', 'node2'),
    { at: at(600), kind: 'operator', node: null, action: 'maintenance stop', by: 'root@vm', reason: 'done' },
    // A planned switchover: its promotion is no incident.
    { at: at(2000), kind: 'operator', node: null, action: 'switchover', to: 'node2', by: 'root@vm', reason: 'rotate' },
    { at: at(2001), kind: 'action', node: 'node2', action: 'promote', result: 'done' },
    { at: at(2001.1), kind: 'switchover', node: 'node1', outcome: 'handed over', to: 'node2' },
    // The primary dies: an automatic promotion opens the next incident, NodeUnreachable joins it.
    { at: at(5000), kind: 'supervisor', node: 'node2', event: 'released lease after proven death' },
    { at: at(5001), kind: 'action', node: 'node3', action: 'promote', result: 'done' },
    alert(5005, 'firing', 'NodeUnreachable', 'critical', 'node2'),
    { at: at(5006), kind: 'decision', node: 'node3', reason: 'renewing the lease', actions: ['renewLease'] },
    { at: at(5030), kind: 'action', node: 'node2', action: 'rewind', from: 'node3', result: 'rewound' },
    alert(5040, 'resolved', 'NodeUnreachable', 'critical', 'node2'),
  ];
}

test('a night like the postmortem: one incident for the flapping replication, none for warnings or a switchover, one for the automatic failover', () => {
  const incidents = buildIncidents(night(), { quietMs, nowMs: t0 + 6000 * 1000 });
  assert.equal(incidents.length, 2, JSON.stringify(incidents.map((i) => i.title)));
  const [replication, failover] = incidents;

  assert.equal(replication!.id, '20261124-005000');
  assert.equal(replication!.title, 'ReplicationStopped on node2');
  assert.equal(replication!.state, 'resolved');
  assert.equal(replication!.startedAt, at(0));
  assert.equal(replication!.endedAt, at(500), 'it ends when the second episode resolved: the first resolution was within the quiet time');
  assert.equal(replication!.duringMaintenance, true);
  assert.equal(replication!.firstPageAt, at(0.02));
  assert.equal(replication!.firstAckAt, at(150));
  assert.equal(replication!.acknowledgedBy, 'bob');
  assert.deepEqual(
    replication!.alerts.map((a) => [a.name, a.severity, a.firedAt, a.resolvedAt, a.acknowledgedBy]),
    [
      ['ReplicationStopped', 'critical', at(0), at(300), 'bob'],
      ['ReplicationLagGrowing', 'warning', at(1), at(510), null],
      ['ReplicationStopped', 'critical', at(400), at(500), null],
    ],
  );
  const texts = replication!.timeline.map((item) => item.text);
  assert.equal(texts[0], 'root@vm ran maintenance start (reason: kernel upgrade)', 'the lead-up comes first: what operators did in the 10 minutes before');
  assert.ok(texts[1]!.startsWith('ReplicationStopped fired (critical) on node2'), texts[1]);
  assert.ok(texts.includes('alice paged about ReplicationStopped on node2 by email and webhook'), texts.join('\n'));
  assert.ok(texts.includes('bob paged about ReplicationStopped on node2 by email (escalation level 2)'), texts.join('\n'));
  assert.ok(texts.includes('bob acknowledged ReplicationStopped on node2 (cli)'));
  assert.ok(texts.includes('root@vm ran maintenance stop (reason: done)'), 'what happens in the quiet time after the end is still told');
  assert.ok(!texts.some((t) => t.includes('renewing')), 'routine decisions stay out');

  assert.equal(failover!.title, 'automatic failover to node3');
  assert.equal(failover!.startedAt, at(5001));
  assert.equal(failover!.endedAt, at(5040));
  assert.deepEqual(failover!.promotions, [{ at: at(5001), node: 'node3', planned: false }]);
  assert.equal(failover!.duringMaintenance, false);
  assert.equal(failover!.firstPageAt, null);
  assert.deepEqual(
    failover!.timeline.map((item) => item.text),
    // The lead-up holds the supervisor's release, not the switchover 50 minutes before.
    ['node2: released lease after proven death', 'node3 promoted to primary (automatic failover)', 'NodeUnreachable fired (critical) on node2: NodeUnreachable summary', 'node2 rewound to follow node3', 'NodeUnreachable resolved on node2'],
  );
  assert.deepEqual(publicIncident(failover!), { id: failover!.id, title: 'automatic failover', state: 'resolved', startedAt: at(5001), endedAt: at(5040) });
  assert.equal(publicIncident(replication!).title, 'ReplicationStopped');
});

test('an incident stays open while a critical alert fires and until the quiet time has passed', () => {
  const entries = night().filter((e) => Date.parse(e.at) < t0 + 450 * 1000);
  const open = buildIncidents(entries, { quietMs, nowMs: t0 + 450 * 1000 });
  assert.equal(open.length, 1);
  assert.equal(open[0]!.state, 'open', 'the second episode still fires');
  const quietNotYet = buildIncidents(night().slice(0, -9), { quietMs, nowMs: t0 + 700 * 1000 });
  assert.equal(quietNotYet[0]!.state, 'open', 'resolved at 500 s, but the quiet time has not passed at 700 s');
  const quietPassed = buildIncidents(night().slice(0, -9), { quietMs, nowMs: t0 + 800 * 1000 });
  assert.equal(quietPassed[0]!.state, 'resolved');
  assert.equal(quietPassed[0]!.endedAt, at(500));
});

test('the supervisor paging AlertingSilent opens an incident; an agent\'s critical alert does too', () => {
  const entries: JournalEntry[] = [
    { at: at(0), kind: 'supervisor', event: 'fallback alert firing', name: 'AlertingSilent', summary: 'the ops process has been silent for 15 s' },
    { at: at(20), kind: 'supervisor', event: 'fallback alert resolved', name: 'AlertingSilent', summary: 'back' },
    { at: at(1000), kind: 'alert', node: 'node2', code: 'promotion-unsafe', severity: 'critical', message: 'cannot prove node2 holds every acknowledged write' },
  ];
  const incidents = buildIncidents(entries, { quietMs, nowMs: t0 + 1100 * 1000 });
  assert.deepEqual(
    incidents.map((i) => [i.title, i.state, i.endedAt]),
    [
      ['AlertingSilent: the ops process went silent', 'resolved', at(20)],
      ['promotion-unsafe on node2', 'open', null],
    ],
  );
  // An agent's alert has no end of its own: the quiet time after it ends the incident.
  const later = buildIncidents(entries, { quietMs, nowMs: t0 + 2000 * 1000 });
  assert.deepEqual([later[1]!.state, later[1]!.endedAt], ['resolved', at(1000)]);
});

test('the postmortem draft has the seed\'s sections in order, the journal\'s facts, and marked gaps instead of guesses', () => {
  const [incident] = buildIncidents(night(), { quietMs, nowMs: t0 + 6000 * 1000 });
  const text = renderPostmortem(incident!, { nowIso: at(7200), exportedBy: 'root' });
  const sections = ['Incident Postmortem Report: ReplicationStopped on node2', 'Date of Incident: November 24, 2026', ' Time of Incident: 12:50 AM - 12:58 AM UTC', ' Duration: 8 minutes 20 seconds', 'Summary', 'Impact', 'Root Cause', 'Timeline', 'Resolution', 'Preventative Measures', 'Lessons Learned', 'Conclusion', 'Prepared by:'];
  let from = 0;
  for (const section of sections) {
    const index = text.indexOf(section, from);
    assert.ok(index >= from, `"${section}" after position ${from}:\n${text}`);
    from = index;
  }
  assert.ok(text.includes('12:50:00 AM: ReplicationStopped fired (critical) on node2'));
  assert.ok(text.includes('12:52:30 AM: bob acknowledged ReplicationStopped on node2 (cli)'));
  assert.ok(text.includes('bob acknowledged 2 minutes 30 seconds after the start'));
  assert.ok(text.includes('Maintenance mode was on during the incident'));
  assert.ok(text.includes('[To be written: the cause, found by the responders]'));
  assert.equal(duration(65 * 60_000), '1 hour 5 minutes');
  assert.equal(duration(40_000), '40 seconds');

  const ongoing = buildIncidents(night().slice(0, 12), { quietMs, nowMs: t0 + 350 * 1000 })[0]!;
  assert.match(renderPostmortem(ongoing, { nowIso: at(350) }), / Time of Incident: 12:50 AM - ongoing UTC\n Duration: 5 minutes 50 seconds so far/);
});

test('properties: every critical firing lies in exactly one incident, incidents do not overlap, and append order does not matter', () => {
  const event = fc.record({
    second: fc.integer({ min: 0, max: 20_000 }),
    name: fc.constantFrom('A', 'B', 'C'),
    severity: fc.constantFrom('critical', 'warning'),
    firing: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.uniqueArray(event, { minLength: 1, maxLength: 60, selector: (e) => e.second }), fc.integer({ min: 0, max: 30_000 }), (events, extraSeconds) => {
      const entries = events.map((e) => alert(e.second, e.firing ? 'firing' : 'resolved', e.name, e.severity, null, `${e.name}/${e.severity}`));
      const nowMs = t0 + (20_000 + extraSeconds) * 1000;
      const incidents = buildIncidents(entries, { quietMs, nowMs });
      assert.deepEqual(buildIncidents([...entries].reverse(), { quietMs, nowMs }), incidents);
      for (let i = 1; i < incidents.length; i++) {
        const before = incidents[i - 1]!;
        assert.equal(before.state, 'resolved', 'only the last incident may be open');
        assert.ok(Date.parse(incidents[i]!.startedAt) >= Date.parse(before.endedAt!) + quietMs, 'the next begins only after the quiet time');
      }
      for (const e of events) {
        if (!(e.firing && e.severity === 'critical')) continue;
        const atMs = t0 + e.second * 1000;
        const holding = incidents.filter((inc) => atMs >= Date.parse(inc.startedAt) && (inc.endedAt === null || atMs <= Date.parse(inc.endedAt)));
        assert.equal(holding.length, 1, `critical firing at ${e.second} s lies in ${holding.length} incidents`);
      }
    }),
    { numRuns: 500 },
  );
});
