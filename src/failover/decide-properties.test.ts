// Proves, for thousands of generated views (fast-check), the safety rules decide() must keep
// whatever it observes: one writer, no unproven takeover, no takeover during maintenance.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decide, desiredSynchronous, maintenanceActive, safetyMarginMs, termActive } from './decide.ts';
import type {
  Action,
  DecideConfig,
  Decision,
  LeaseRecord,
  MaintenanceRecord,
  MemberState,
  NodeObservation,
  TimelineSwitch,
  View,
  Wal,
} from './types.ts';
import { containsWal, timelineAt } from './wal.ts';

const now = 1_000_000;
const names = ['node1', 'node2', 'node3', 'node4', 'node5'];
const runs = { numRuns: 3000 };

interface Case {
  readonly config: DecideConfig;
  readonly view: View;
}

/** WAL on timeline 1–3, positions from a small set (so ties and prefixes are frequent) or anywhere. */
const walArb = fc
  .record({
    timeline: fc.integer({ min: 1, max: 3 }),
    switches: fc.array(fc.integer({ min: 0, max: 8000 }), { minLength: 2, maxLength: 2 }),
    flushedLsn: fc.oneof(fc.constantFrom(1000, 4000, 5000, 6000), fc.integer({ min: 0, max: 8000 })),
  })
  .map(({ timeline, switches, flushedLsn }) => {
    const ends = [...switches].sort((a, b) => a - b);
    const history: TimelineSwitch[] = [];
    for (let t = 1; t < timeline; t += 1) history.push({ timeline: t, endLsn: ends[t - 1]! });
    return { timeline, history, flushedLsn };
  });

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    size: fc.integer({ min: 1, max: 5 }),
    quorumPick: fc.integer({ min: 1, max: 4 }),
    meIndex: fc.integer({ min: 0, max: 4 }),
    leaseTtlMs: fc.constantFrom(1500, 3000, 10_000),
    maximumLagOnFailoverBytes: fc.constantFrom(0, 2000, 1_048_576),
    // Bias towards the interesting case: the primary's term just ended and standbys detached.
    failoverish: fc.boolean(),
  })
  .chain(({ size, quorumPick, meIndex, leaseTtlMs, maximumLagOnFailoverBytes, failoverish }) => {
    const members = names.slice(0, size);
    const me = members[meIndex % size]!;
    const others = members.filter((n) => n !== me);
    const config: DecideConfig = {
      members,
      synchronousQuorum: Math.min(quorumPick, Math.max(1, others.length)),
      leaseTtlMs,
      loopIntervalMs: 500,
      failoverDeadlineMs: 3 * leaseTtlMs,
      maximumLagOnFailoverBytes,
      primaryStartTimeoutMs: 4 * leaseTtlMs,
    };
    const memberArb = (name: string): fc.Arbitrary<MemberState> =>
      fc
        .record({
          wal: walArb,
          publishedAgoMs: failoverish ? fc.integer({ min: 0, max: 1500 }) : fc.integer({ min: 0, max: 20_000 }),
          running: failoverish ? fc.constantFrom(true, true, true, false) : fc.boolean(),
          role: failoverish ? fc.constantFrom('standby' as const, 'standby' as const, 'primary' as const) : fc.constantFrom('primary' as const, 'standby' as const),
          upstream: failoverish ? fc.constantFrom(null, null, null, ...members) : fc.constantFrom(null, ...members),
          streaming: fc.boolean(),
          syncKnown: fc.constantFrom(true, true, true, false),
        })
        .map((m) => ({
          name,
          publishedAtMs: now - m.publishedAgoMs,
          running: m.running,
          role: m.role,
          ...m.wal,
          upstream: m.upstream === name ? null : m.upstream,
          streaming: m.streaming,
          synchronous: m.syncKnown ? desiredSynchronous(config, name) : null,
          primarySeen: null,
        }));
    const nodeArb: fc.Arbitrary<NodeObservation> = fc
      .record({
        wal: walArb,
        running: fc.constantFrom(true, true, true, false),
        downForMs: fc.integer({ min: 0, max: 60_000 }),
        role: fc.constantFrom('primary' as const, 'standby' as const),
        upstream: failoverish ? fc.constantFrom(null, null, ...others) : fc.constantFrom(null, ...others),
        streaming: fc.boolean(),
        syncRight: fc.constantFrom(true, true, true, false),
      })
      .map((n) => ({
        name: me,
        running: n.running,
        downSinceMs: n.running ? null : now - n.downForMs,
        role: n.role,
        ...n.wal,
        replayedLsn: n.wal.flushedLsn,
        upstream: n.upstream,
        streaming: n.streaming,
        synchronous: n.syncRight ? desiredSynchronous(config, me) : null,
      }));
    const recordArb: fc.Arbitrary<LeaseRecord | null> = fc.option(
      fc.record({
        holder: fc.constantFrom(...members),
        revision: fc.integer({ min: 1, max: 50 }),
        acquiredAgoMs: fc.integer({ min: 0, max: 4 * leaseTtlMs }),
        expiresInMs: failoverish ? fc.integer({ min: -3000, max: 0 }) : fc.integer({ min: -leaseTtlMs, max: leaseTtlMs }),
        released: fc.constantFrom(false, false, true),
        rolledBack: fc.boolean(),
      }).map((r) => ({
        holder: r.holder,
        revision: String(r.revision),
        acquiredAtMs: now - r.acquiredAgoMs,
        expiresAtMs: now + r.expiresInMs,
        released: r.released,
        rolledBack: r.released && r.rolledBack,
      })),
      { nil: null, freq: 8 },
    );
    const maintenanceArb: fc.Arbitrary<MaintenanceRecord | null> = fc.option(
      fc.record({ revision: fc.integer({ min: 1, max: 9 }), active: fc.boolean(), expiresInMs: fc.integer({ min: -5000, max: 5000 }) }).map((m) => ({
        revision: String(m.revision),
        active: m.active,
        expiresAtMs: now + m.expiresInMs,
        reason: 'test',
        owner: 'prop',
      })),
      { nil: null, freq: 2 },
    );
    return fc
      .record({
        node: nodeArb,
        known: fc.constantFrom(true, true, true, false),
        record: recordArb,
        maintenance: maintenanceArb,
        members: fc.tuple(...others.map((n) => fc.option(memberArb(n), { nil: null, freq: 6 }))),
        replies: fc.tuple(...others.map((n) => fc.option(fc.boolean().map((confirms) => ({ name: n, confirms })), { nil: null }))),
      })
      .map((v): Case => ({
        config,
        view: {
          node: v.node,
          lease: v.known ? { known: true, record: v.record } : { known: false, lastKnown: v.record },
          maintenance: v.maintenance,
          members: v.members.filter((m): m is MemberState => m !== null),
          failsafe: v.known ? [] : v.replies.filter((r): r is { name: string; confirms: boolean } => r !== null),
          switchover: null,
          manualFailover: null,
        },
      }));
  });

function has(made: Decision, type: Action['type']): boolean {
  return made.actions.some((a) => a.type === type);
}

test('decide() is deterministic and never changes the view it was given', () => {
  // Proves purity as the simulator and journal replay rely on it.
  fc.assert(
    fc.property(caseArb, ({ config, view }) => {
      const before = structuredClone(view);
      const first = decide(view, config, now);
      assert.deepEqual(view, before);
      assert.deepEqual(decide(before, config, now), first);
    }),
    runs,
  );
});

test('every decision has a one-line reason, and writer-making actions come right after a lease write', () => {
  // Proves the journal gets one readable line per tick and a late-executed decision fails at its lease write.
  fc.assert(
    fc.property(caseArb, ({ config, view }) => {
      const made = decide(view, config, now);
      assert.ok(made.reason.length > 0 && !made.reason.includes('\n'), made.reason);
      const nonAlerts = made.actions.filter((a) => a.type !== 'alert');
      const leaseWrites = nonAlerts.filter((a) => a.type === 'renewLease' || a.type === 'acquireLease' || a.type === 'releaseLease');
      assert.ok(leaseWrites.length <= 1, JSON.stringify(made.actions));
      nonAlerts.forEach((action, i) => {
        const writer = action.type === 'promote' || (action.type === 'start' && action.role === 'primary');
        if (writer) assert.ok(i > 0 && (nonAlerts[i - 1]!.type === 'renewLease' || nonAlerts[i - 1]!.type === 'acquireLease'), made.reason);
      });
    }),
    runs,
  );
});

test('nobody takes the lease while another node’s term is running or while the store is unreachable', () => {
  // Proves acquisitions happen only on an ended term read from the store.
  fc.assert(
    fc.property(caseArb, ({ config, view }) => {
      const made = decide(view, config, now);
      if (!has(made, 'acquireLease')) return;
      assert.ok(view.lease.known, made.reason);
      if (view.lease.known && view.lease.record !== null) assert.ok(!termActive(view.lease.record, now), made.reason);
    }),
    runs,
  );
});

test('no takeover starts while maintenance is on', () => {
  // Proves invariant 6: only the last holder itself may take the lease back during maintenance.
  fc.assert(
    fc.property(caseArb, ({ config, view }) => {
      const made = decide(view, config, now);
      if (!has(made, 'acquireLease') || !view.lease.known || view.lease.record === null) return;
      if (view.lease.record.holder !== view.node.name) assert.ok(!maintenanceActive(view.maintenance, now), made.reason);
    }),
    runs,
  );
});

test('a takeover happens only with proof that the candidate has every acknowledged write', () => {
  // Proves invariant 5 against an independent reading of the rule: N−k+1 final positions, all contained, lag bounded.
  let takeovers = 0;
  fc.assert(
    fc.property(caseArb, ({ config, view }) => {
      const made = decide(view, config, now);
      if (!has(made, 'acquireLease') || !view.lease.known || view.lease.record === null) return;
      const record = view.lease.record;
      if (record.holder === view.node.name) return;
      takeovers += 1;
      const me = view.node;
      assert.ok(me.running && me.role === 'standby' && me.upstream === null, made.reason);
      const last = view.members.find((m) => m.name === record.holder);
      // A holder not seen running as primary is held to the configured quorum (the shell sets it before promoting).
      const sync = last === undefined ? undefined : last.running && last.role === 'primary' ? last.synchronous : desiredSynchronous(config, last.name);
      assert.ok(last !== undefined && sync !== null && sync !== undefined, made.reason);
      const finals = sync.standbys.flatMap((name): Wal[] => {
        if (name === me.name) return [me];
        const state = view.members.find((m) => m.name === name);
        const final = state !== undefined && state.publishedAtMs >= record.expiresAtMs && (!state.running || (state.role === 'standby' && state.upstream === null));
        return final ? [state] : [];
      });
      assert.ok(finals.length >= sync.standbys.length - sync.quorum + 1, made.reason);
      // A final standby that left the last holder's history (and is on no newer timeline than the
      // holder published) can hold acknowledged writes only up to where it left.
      const holder = { ...last, flushedLsn: Number.POSITIVE_INFINITY };
      const acknowledgedPart = (final: Wal): Wal => {
        if (final.timeline > last.timeline) return final;
        const points = [final.flushedLsn, ...final.history.map((h) => h.endLsn), ...last.history.map((h) => h.endLsn)].filter((p) => p <= final.flushedLsn);
        const agreed = points.filter((p) => timelineAt(final, p) === timelineAt(holder, p));
        return { ...final, flushedLsn: Math.max(0, ...agreed) };
      };
      for (const final of finals) assert.ok(containsWal(me, acknowledgedPart(final)), `${made.reason}: lacks ${final.flushedLsn}`);
      assert.ok(last.flushedLsn - me.flushedLsn <= config.maximumLagOnFailoverBytes, made.reason);
    }),
    { ...runs, numRuns: 6000 },
  );
  // The property must not hold vacuously: the generator reaches takeovers.
  assert.ok(takeovers >= 20, `only ${takeovers} takeovers generated`);
});

test('a running primary keeps taking writes only under its own lease or with failsafe confirmation', () => {
  // Proves invariant 4 for every observation: otherwise the decision demotes it.
  fc.assert(
    fc.property(caseArb, ({ config, view }) => {
      const made = decide(view, config, now);
      const me = view.node;
      if (!me.running || me.role !== 'primary' || has(made, 'demote')) return;
      const lease = view.lease;
      if (lease.known) {
        const record = lease.record;
        if (record === null) return assert.ok(has(made, 'acquireLease'), made.reason);
        assert.equal(record.holder, me.name, made.reason);
        if (termActive(record, now)) return assert.ok(has(made, 'renewLease'), made.reason);
        assert.ok(!record.released && has(made, 'acquireLease'), made.reason);
        return;
      }
      const lastKnown = lease.lastKnown;
      if (lastKnown !== null && lastKnown.holder === me.name && !lastKnown.released && lastKnown.expiresAtMs - now > safetyMarginMs(config)) return;
      // Failsafe: every standby it reached confirms it, and at least k of them (enough to acknowledge).
      const others = config.members.length - 1;
      const needed = Math.max(1, Math.min(me.synchronous?.quorum ?? config.synchronousQuorum, others));
      const confirming = view.failsafe.filter((r) => r.confirms).length;
      assert.ok(others === 0 || (confirming >= needed && view.failsafe.every((r) => r.confirms)), made.reason);
    }),
    runs,
  );
});

test('a standby that cannot reach the store never detaches, takes over or promotes', () => {
  // Proves that without the lease a node does nothing a failover needs.
  fc.assert(
    fc.property(caseArb, ({ config, view }) => {
      if (view.lease.known) return;
      const made = decide(view, config, now);
      for (const action of made.actions) {
        assert.ok(['alert', 'demote', 'start'].includes(action.type), made.reason);
        if (action.type === 'start') assert.equal(action.role, 'standby');
      }
    }),
    runs,
  );
});
