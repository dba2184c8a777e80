// Proves the pure escalation core without a clock: examples of a night's escalation, then
// fast-check properties over generated policies, rotas and call schedules: nothing is paged after
// an ack, no (round, level) is paged twice, every level is reached on time, `nextAt` is exact,
// resolution tells exactly the people paged, and the rota's handoffs and overrides pick the right
// person.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { alertingConfigSchema, type AlertingConfigInput, type PolicyConfig, type RotaConfig } from './config-schema.ts';
import {
  escalate,
  firstHandoffMs,
  nextOnCallAt,
  onCallAt,
  policyFor,
  recipientsFor,
  recordNotifications,
  shiftAt,
  startEscalation,
  type EscalationState,
  type Notification,
} from './escalation.ts';
import type { Ack, Alert } from './types.ts';

const minute = 60_000;
const runs = { numRuns: 500 };
/** Monday 2024-06-03 10:00 UTC: week 22 after the default first handoff, so alice's shift. */
const start = Date.parse('2024-06-03T10:00:00Z');

function alertAt(status: Alert['status'] = 'firing'): Alert {
  return { id: 'a1', name: 'ReplicationStopped', severity: 'critical', node: 'node2', summary: 'node2 stopped replaying WAL', startsAt: new Date(start).toISOString(), status };
}

function configOf(input: AlertingConfigInput) {
  return alertingConfigSchema.parse(input);
}

const twoPeople = configOf({
  channels: [
    { name: 'alice-mail', type: 'email', to: ['alice@example.org'] },
    { name: 'alice-sms', type: 'command', command: ['sms', 'alice'] },
    { name: 'bob-mail', type: 'email', to: ['bob@example.org'] },
    { name: 'bob-sms', type: 'command', command: ['sms', 'bob'] },
    { name: 'team-hook', type: 'webhook', url: 'http://127.0.0.1:9099/team' },
  ],
  rota: {
    people: [
      { name: 'alice', channels: ['alice-mail', 'alice-sms'] },
      { name: 'bob', channels: ['bob-mail', 'bob-sms'] },
    ],
  },
  policies: [
    {
      name: 'critical',
      severities: ['critical'],
      levels: [
        { afterMinutes: 0, notify: ['on-call'] },
        { afterMinutes: 5, notify: ['next-on-call'] },
        { afterMinutes: 10, notify: ['team-hook'] },
      ],
      repeat: { times: 1, afterMinutes: 10 },
    },
  ],
});

/** Calls escalate at each time in order, recording what it decides, as the shell does. */
function drive(
  alert: Alert,
  policy: PolicyConfig,
  rota: RotaConfig,
  channels: readonly string[],
  times: readonly number[],
  options: { ackAt?: number; sinceMs?: number } = {},
): { state: EscalationState; sent: { at: number; notification: Notification }[]; lastNextAt: number | null } {
  let state = startEscalation(options.sinceMs ?? start);
  const sent: { at: number; notification: Notification }[] = [];
  let lastNextAt: number | null = null;
  for (const now of times) {
    const acks: Record<string, Ack> = options.ackAt !== undefined && now >= options.ackAt ? { [alert.id]: { by: 'bob', atMs: options.ackAt } } : {};
    const result = escalate(alert, { policy, rota, channels, acks, state, now });
    for (const notification of result.notify) sent.push({ at: now, notification });
    state = recordNotifications(state, result.notify, now);
    lastNextAt = result.nextAt;
  }
  return { state, sent, lastNextAt };
}

const channelNames = twoPeople.channels.map((c) => c.name);
const criticalPolicy = twoPeople.policies[0]!;

test('the person on call is paged first, the next person after 5 minutes, the team hook after 15', () => {
  // Proves the basic escalation ladder, and that people are paged on all their channels at once.
  const { sent } = drive(alertAt(), criticalPolicy, twoPeople.rota, channelNames, [start, start + 4 * minute, start + 5 * minute, start + 15 * minute]);
  assert.deepEqual(
    sent.map((s) => [s.at - start, s.notification.level, s.notification.person, s.notification.channels]),
    [
      [0, 0, 'alice', ['alice-mail', 'alice-sms']],
      [5 * minute, 1, 'bob', ['bob-mail', 'bob-sms']],
      [15 * minute, 2, null, ['team-hook']],
    ],
  );
});

test('calling again at the same moment with the recorded state pages nobody twice', () => {
  // Proves idempotency: the shell may call twice (tick and transition, or after a restart).
  let state = startEscalation(start);
  const context = { policy: criticalPolicy, rota: twoPeople.rota, channels: channelNames, acks: {}, now: start };
  const first = escalate(alertAt(), { ...context, state });
  assert.equal(first.notify.length, 1);
  state = recordNotifications(state, first.notify, start);
  const second = escalate(alertAt(), { ...context, state });
  assert.deepEqual(second.notify, []);
  assert.equal(second.nextAt, start + 5 * minute);
  assert.equal(second.done, false);
});

test('an acknowledgement stops the escalation; resolution tells everyone who was paged', () => {
  // Proves ack stops paging and that resolution goes to alice and bob, not to the hook never paged.
  const times = [start, start + 5 * minute, start + 6 * minute, start + 15 * minute, start + 60 * minute];
  const { state, sent } = drive(alertAt(), criticalPolicy, twoPeople.rota, channelNames, times, { ackAt: start + 6 * minute });
  assert.deepEqual(sent.map((s) => s.notification.person), ['alice', 'bob']);
  const acked = escalate(alertAt(), { policy: criticalPolicy, rota: twoPeople.rota, channels: channelNames, acks: { a1: { by: 'bob', atMs: start + 6 * minute } }, state, now: start + 61 * minute });
  assert.equal(acked.done, true);
  assert.match(acked.reason, /acknowledged by bob/);
  const resolved = escalate(alertAt('resolved'), { policy: criticalPolicy, rota: twoPeople.rota, channels: channelNames, acks: {}, state, now: start + 70 * minute });
  assert.deepEqual(
    resolved.notify.map((n) => [n.kind, n.person, n.channels]),
    [
      ['resolved', 'alice', ['alice-mail', 'alice-sms']],
      ['resolved', 'bob', ['bob-mail', 'bob-sms']],
    ],
  );
  const after = recordNotifications(state, resolved.notify, start + 70 * minute);
  assert.deepEqual(escalate(alertAt('resolved'), { policy: criticalPolicy, rota: twoPeople.rota, channels: channelNames, acks: {}, state: after, now: start + 71 * minute }).notify, []);
});

test('with an empty rota, on-call means every channel; without a policy nobody is paged', () => {
  // Proves a section with only channels still reaches someone, and that info alerts stay quiet.
  const config = configOf({ channels: [{ name: 'mail', type: 'email', to: ['ops@example.org'] }, { name: 'hook', type: 'webhook', url: 'http://127.0.0.1:9/' }] });
  const policy = policyFor(alertAt(), config.policies);
  const result = escalate(alertAt(), { policy, rota: config.rota, channels: ['mail', 'hook'], acks: {}, state: startEscalation(start), now: start });
  assert.deepEqual(result.notify.map((n) => [n.person, n.channels]), [[null, ['mail', 'hook']]]);
  const info = { ...alertAt(), severity: 'info' as const };
  const quiet = escalate(info, { policy: policyFor(info, config.policies), rota: config.rota, channels: ['mail', 'hook'], acks: {}, state: startEscalation(start), now: start });
  assert.deepEqual(quiet.notify, []);
  assert.equal(quiet.done, true);
});

test('a level naming a person and one of their channels sends that channel once', () => {
  // Proves recipients are merged so nobody gets the same page twice through one channel.
  const recipients = recipientsFor(['on-call', 'alice', 'alice-mail', 'team-hook'], { rota: twoPeople.rota, channels: channelNames, onCall: 'alice', nextOnCall: 'bob' });
  assert.deepEqual(recipients, [
    { person: 'alice', channels: ['alice-mail', 'alice-sms'] },
    { person: null, channels: ['team-hook'] },
  ]);
});

test('after a long gap each due level is paged once, at its latest round, not every missed round', () => {
  // Proves catch-up after downtime: no burst of replayed rounds, and the ladder is not lost.
  const { sent } = drive(alertAt(), criticalPolicy, twoPeople.rota, channelNames, [start + 100 * minute]);
  assert.deepEqual(
    sent.map((s) => [s.notification.round, s.notification.level]),
    [
      [1, 0],
      [1, 1],
      [1, 2],
    ],
  );
});

test('the weekly handoff moves the shift at Monday 09:00 UTC, and an override wins while it lasts', () => {
  // Proves the rota at the handoff instant and inside an override, with examples a person can check.
  const rota = configOf({
    channels: [{ name: 'm', type: 'email', to: ['x@y.z'] }],
    rota: {
      people: [
        { name: 'alice', channels: ['m'] },
        { name: 'bob', channels: ['m'] },
        { name: 'carol', channels: ['m'] },
      ],
      since: '2024-01-01T00:00:00Z',
      overrides: [{ from: '2024-01-10T00:00:00Z', to: '2024-01-11T00:00:00Z', person: 'carol' }],
    },
  }).rota;
  assert.equal(firstHandoffMs(rota), Date.parse('2024-01-01T09:00:00Z'));
  assert.equal(onCallAt(rota, Date.parse('2024-01-01T08:59:59.999Z')), 'carol'); // the shift before the first
  assert.equal(onCallAt(rota, Date.parse('2024-01-01T09:00:00Z')), 'alice');
  assert.equal(onCallAt(rota, Date.parse('2024-01-08T08:59:59.999Z')), 'alice');
  assert.equal(onCallAt(rota, Date.parse('2024-01-08T09:00:00Z')), 'bob');
  assert.equal(nextOnCallAt(rota, Date.parse('2024-01-08T09:00:00Z')), 'carol');
  assert.equal(onCallAt(rota, Date.parse('2024-01-10T12:00:00Z')), 'carol'); // override
  assert.equal(onCallAt(rota, Date.parse('2024-01-11T00:00:00Z')), 'bob'); // override ended
  assert.equal(onCallAt(rota, Date.parse('2024-01-22T09:00:00Z')), 'alice'); // round robin
});

// ---- properties -------------------------------------------------------------------------------

const peopleNames = ['p0', 'p1', 'p2', 'p3'];

const caseArb = fc
  .record({
    people: fc.integer({ min: 0, max: 4 }),
    levels: fc.array(
      fc.record({
        afterMinutes: fc.integer({ min: 0, max: 30 }),
        notify: fc.subarray(['on-call', 'next-on-call', 'p0', 'hook'], { minLength: 1 }),
      }),
      { minLength: 1, maxLength: 4 },
    ),
    repeat: fc.record({ times: fc.integer({ min: 0, max: 3 }), afterMinutes: fc.integer({ min: 1, max: 30 }) }),
    every: fc.constantFrom('day' as const, 'week' as const),
    times: fc.array(fc.integer({ min: 0, max: 8 * 60 * minute }), { maxLength: 25 }),
  })
  .map((c) => {
    const people = peopleNames.slice(0, c.people);
    const config = configOf({
      channels: [
        ...people.flatMap((p) => [
          { name: `${p}-mail`, type: 'email' as const, to: [`${p}@example.org`] },
          { name: `${p}-sms`, type: 'command' as const, command: ['sms', p] },
        ]),
        { name: 'hook', type: 'webhook', url: 'http://127.0.0.1:9099/' },
      ],
      rota: { people: people.map((p) => ({ name: p, channels: [`${p}-mail`, `${p}-sms`] })), handoff: { every: c.every } },
      policies: [{ name: 'p', severities: ['critical'], levels: c.levels.map((l) => ({ ...l, notify: l.notify.filter((t) => t !== 'p0' || people.includes('p0')) })).map((l) => (l.notify.length > 0 ? l : { ...l, notify: ['hook'] })), repeat: c.repeat }],
    });
    return { config, policy: config.policies[0]!, channels: config.channels.map((ch) => ch.name), times: [...c.times].sort((a, b) => a - b).map((t) => start + t) };
  });

/** When (round 0) each level of a policy falls due: start + the sum of afterMinutes up to it. */
function dueAt(policy: PolicyConfig, sinceMs: number): number[] {
  let total = sinceMs;
  return policy.levels.map((level) => (total += level.afterMinutes * minute));
}

test('property: nothing is paged after an acknowledgement', () => {
  // Proves issue 8 point 4 for any policy and schedule: once acked, every later call pages nobody.
  fc.assert(
    fc.property(caseArb, fc.integer({ min: 0, max: 8 * 60 * minute }), ({ config, policy, channels, times }, ackOffset) => {
      const ackAt = start + ackOffset;
      const { sent } = drive(alertAt(), policy, config.rota, channels, times, { ackAt });
      for (const s of sent) assert.ok(s.at < ackAt, `paged at +${s.at - start} ms after the ack at +${ackOffset} ms`);
    }),
    runs,
  );
});

test('property: no (round, level) is paged twice, and without a repeat no level is paged twice', () => {
  // Proves idempotency over whole schedules, including repeated calls at the same moment.
  fc.assert(
    fc.property(caseArb, ({ config, policy, channels, times }) => {
      const doubled = times.flatMap((t) => [t, t]);
      const { sent } = drive(alertAt(), policy, config.rota, channels, doubled);
      const keys = sent.map((s) => s.notification.key);
      assert.equal(new Set(keys).size, keys.length, `a key was paged twice: ${keys.join(' ')}`);
      if (policy.repeat.times === 0) {
        const rounds = new Map<number, Set<number>>();
        for (const { notification } of sent) rounds.set(notification.level, (rounds.get(notification.level) ?? new Set()).add(notification.round));
        for (const [level, seen] of rounds) assert.equal(seen.size, 1, `level ${level} paged in rounds ${[...seen].join(', ')}`);
      }
    }),
    runs,
  );
});

test('property: when not acknowledged, level k has been paged by start + the sum of afterMinutes up to k', () => {
  // Proves no level is skipped or late: after any call at or past a level's due time, it was paged.
  fc.assert(
    fc.property(caseArb, ({ config, policy, channels, times }) => {
      const due = dueAt(policy, start);
      let state = startEscalation(start);
      const pagedLevels = new Set<number>();
      for (const now of [...times, due[due.length - 1]!].sort((a, b) => a - b)) {
        const result = escalate(alertAt(), { policy, rota: config.rota, channels, acks: {}, state, now });
        for (const n of result.notify) pagedLevels.add(n.level);
        state = recordNotifications(state, result.notify, now);
        due.forEach((at, k) => {
          if (now >= at) assert.ok(pagedLevels.has(k), `level ${k} due at +${at - start} ms not paged by +${now - start} ms`);
        });
      }
    }),
    runs,
  );
});

test('property: nextAt is exact: nothing new just before it, something at it', () => {
  // Proves the shell can sleep until nextAt without missing or delaying a level.
  fc.assert(
    fc.property(caseArb, ({ config, policy, channels, times }) => {
      const { state, lastNextAt } = drive(alertAt(), policy, config.rota, channels, times.length > 0 ? times : [start]);
      if (lastNextAt === null) return;
      const context = { policy, rota: config.rota, channels, acks: {}, state };
      const last = times.length > 0 ? times[times.length - 1]! : start;
      if (lastNextAt - 1 >= last) assert.deepEqual(escalate(alertAt(), { ...context, now: lastNextAt - 1 }).notify, []);
      assert.ok(escalate(alertAt(), { ...context, now: lastNextAt }).notify.length > 0);
    }),
    runs,
  );
});

test('property: resolution tells exactly the people and channels that were paged, once', () => {
  // Proves issue 8 point 4's "resolution notifies the same people".
  fc.assert(
    fc.property(caseArb, ({ config, policy, channels, times }) => {
      const { state, sent } = drive(alertAt(), policy, config.rota, channels, times);
      const resolved = escalate(alertAt('resolved'), { policy, rota: config.rota, channels, acks: {}, state, now: start + 9 * 60 * minute });
      const pagedPairs = new Set(sent.flatMap((s) => s.notification.channels.map((c) => `${s.notification.person}/${c}`)));
      const toldPairs = new Set(resolved.notify.flatMap((n) => n.channels.map((c) => `${n.person}/${c}`)));
      assert.deepEqual([...toldPairs].sort(), [...pagedPairs].sort());
      const after = recordNotifications(state, resolved.notify, start + 9 * 60 * minute);
      assert.deepEqual(escalate(alertAt('resolved'), { policy, rota: config.rota, channels, acks: {}, state: after, now: start + 10 * 60 * minute }).notify, []);
    }),
    runs,
  );
});

test('property: the rota picks the person a walk from the first handoff reaches; overrides win', () => {
  // Proves shift arithmetic (daily and weekly, any handoff time, before and after `since`) against
  // a plain step-by-step walk, and that the last override covering a moment decides it.
  const rotaArb = fc.record({
    count: fc.integer({ min: 1, max: 4 }),
    every: fc.constantFrom('day' as const, 'week' as const),
    weekday: fc.constantFrom('sunday' as const, 'monday' as const, 'wednesday' as const, 'saturday' as const),
    hour: fc.integer({ min: 0, max: 23 }),
    minuteOfHour: fc.integer({ min: 0, max: 59 }),
    sinceOffset: fc.integer({ min: 0, max: 400 * 24 * 60 * minute }),
    at: fc.integer({ min: -30 * 24 * 60 * minute, max: 400 * 24 * 60 * minute }),
    // Overrides placed around the moment looked at, so they often cover it and often overlap.
    overrides: fc.array(fc.record({ from: fc.integer({ min: -3 * 24 * 60, max: 24 * 60 }), length: fc.integer({ min: 1, max: 3 * 24 * 60 }), person: fc.integer({ min: 0, max: 3 }) }), { maxLength: 3 }),
  });
  fc.assert(
    fc.property(rotaArb, (r) => {
      const base = Date.parse('2024-01-01T00:00:00Z');
      const people = peopleNames.slice(0, r.count);
      const now = base + r.sinceOffset + r.at;
      const at = `${String(r.hour).padStart(2, '0')}:${String(r.minuteOfHour).padStart(2, '0')}`;
      const since = new Date(base + r.sinceOffset).toISOString();
      const rota = configOf({
        channels: [{ name: 'm', type: 'email', to: ['x@y.z'] }],
        rota: {
          people: people.map((name) => ({ name, channels: ['m'] })),
          handoff: { every: r.every, weekday: r.weekday, at },
          since,
          overrides: r.overrides.map((o) => ({ from: new Date(now + o.from * minute).toISOString(), to: new Date(now + (o.from + o.length) * minute).toISOString(), person: people[o.person % people.length]! })),
        },
      }).rota;
      // The walk: from `since`, whole minute by whole minute to the first handoff, then shift by shift.
      const period = r.every === 'week' ? 7 * 24 * 60 * minute : 24 * 60 * minute;
      let first = Date.parse(since);
      while (true) {
        const d = new Date(first);
        const dayOk = r.every === 'day' || d.getUTCDay() === ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'].indexOf(r.weekday);
        if (dayOk && d.getUTCHours() === r.hour && d.getUTCMinutes() === r.minuteOfHour && d.getUTCSeconds() === 0 && d.getUTCMilliseconds() === 0) break;
        first = Math.floor(first / minute) * minute + minute; // next whole minute
      }
      let shiftStart = first;
      let index = 0;
      while (shiftStart + period <= now) (shiftStart += period), index++;
      while (shiftStart > now) (shiftStart -= period), index--;
      const scheduled = people[((index % people.length) + people.length) % people.length];
      assert.equal(shiftAt(rota, now).person, scheduled);
      assert.equal(shiftAt(rota, now).startMs, shiftStart);
      const covering = rota.overrides.filter((o) => Date.parse(o.from) <= now && now < Date.parse(o.to));
      const expected = covering.length > 0 ? covering[covering.length - 1]!.person : scheduled;
      assert.equal(onCallAt(rota, now), expected);
    }),
    { numRuns: 300 },
  );
});
