// Proves decide() takes the right action, with a readable reason, in each situation of
// docs/failover-core.md, one example at a time.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { confirmsPrimary, decide, desiredSynchronous, rollbackCooldownMs, settleSynchronous } from './decide.ts';
import type {
  Action,
  DecideConfig,
  Decision,
  FailsafeReply,
  LeaseRecord,
  MaintenanceRecord,
  ManualFailoverRequest,
  MemberState,
  NodeObservation,
  SwitchoverRequest,
  View,
} from './types.ts';

const now = 100_000;
const config: DecideConfig = {
  members: ['node1', 'node2', 'node3'],
  synchronousQuorum: 1,
  leaseTtlMs: 3000,
  loopIntervalMs: 500,
  failoverDeadlineMs: 30_000,
  maximumLagOnFailoverBytes: 1_048_576,
  primaryStartTimeoutMs: 20_000,
};

function observation(name: string, fields: Partial<NodeObservation> = {}): NodeObservation {
  return {
    name,
    running: true,
    downSinceMs: null,
    role: 'standby',
    timeline: 1,
    history: [],
    flushedLsn: 5000,
    replayedLsn: 5000,
    upstream: 'node1',
    streaming: true,
    synchronous: desiredSynchronous(config, name),
    ...fields,
  };
}

function primaryObservation(name: string, fields: Partial<NodeObservation> = {}): NodeObservation {
  return observation(name, { role: 'primary', upstream: null, streaming: false, flushedLsn: 6000, replayedLsn: 6000, ...fields });
}

function member(name: string, fields: Partial<MemberState> = {}): MemberState {
  const { replayedLsn: _, ...rest } = observation(name);
  return { ...rest, publishedAtMs: now - 100, primarySeen: null, ...fields };
}

function lease(fields: Partial<LeaseRecord> = {}): LeaseRecord {
  return { holder: 'node1', revision: '7', acquiredAtMs: now - 60_000, expiresAtMs: now + 2500, released: false, rolledBack: false, ...fields };
}

interface ViewFields {
  readonly record?: LeaseRecord | null;
  readonly unreachable?: boolean;
  readonly maintenance?: MaintenanceRecord | null;
  readonly members?: readonly MemberState[];
  readonly failsafe?: readonly FailsafeReply[];
  readonly switchover?: SwitchoverRequest | null;
  readonly manualFailover?: ManualFailoverRequest | null;
}

function view(node: NodeObservation, fields: ViewFields = {}): View {
  const record = fields.record === undefined ? lease() : fields.record;
  return {
    node,
    lease: fields.unreachable === true ? { known: false, lastKnown: record } : { known: true, record },
    maintenance: fields.maintenance ?? null,
    members: fields.members ?? [],
    failsafe: fields.failsafe ?? [],
    switchover: fields.switchover ?? null,
    manualFailover: fields.manualFailover ?? null,
  };
}

/** The actions without alerts, as `type` or `type(argument)` strings, for compact assertions. */
function steps(made: Decision): string[] {
  return made.actions.filter((a) => a.type !== 'alert').map(describe);
}

function describe(action: Action): string {
  switch (action.type) {
    case 'follow':
    case 'rewind':
      return `${action.type}(${action.node})`;
    case 'detach':
      return `detach(${action.from})`;
    case 'start':
      return `start(${action.role})`;
    default:
      return action.type;
  }
}

function alerts(made: Decision): string[] {
  return made.actions.flatMap((a) => (a.type === 'alert' ? [`${a.severity}:${a.code}`] : []));
}

// A cluster after node1's term ended at now − 1000: node2 and node3 detached and published since.
const ended = lease({ expiresAtMs: now - 1000 });
const oldPrimary = member('node1', { role: 'primary', upstream: null, streaming: false, flushedLsn: 6000, publishedAtMs: now - 1500 });
const detached = (name: string, flushedLsn: number, fields: Partial<MemberState> = {}): MemberState =>
  member(name, { upstream: null, streaming: false, flushedLsn, publishedAtMs: now - 200, ...fields });

test('a primary holding the lease renews it every tick and says so', () => {
  // Proves the steady state of a primary: one renewal on the revision it read, Patroni-style reason.
  const made = decide(view(primaryObservation('node1')), config, now);
  assert.deepEqual(made.actions, [{ type: 'renewLease', revision: '7', ttlMs: 3000 }]);
  assert.equal(made.reason, 'no action: I am node1, the primary, holding the lease');
});

test('a standby streaming from the lease holder does nothing', () => {
  // Proves the steady state of a standby and its one-line reason.
  const made = decide(view(observation('node2'), { members: [member('node1', { role: 'primary', upstream: null })] }), config, now);
  assert.deepEqual(made.actions, []);
  assert.equal(made.reason, 'no action: I am node2, following node1');
});

test('a standby that follows nobody while another node holds the lease follows it', () => {
  // Proves standbys converge on the lease holder once it is primary.
  const node = observation('node3', { upstream: null, streaming: false });
  const made = decide(view(node, { members: [member('node1', { role: 'primary', upstream: null })] }), config, now);
  assert.deepEqual(steps(made), ['follow(node1)']);
});

test('a standby whose WAL left the holder’s history rewinds from it', () => {
  // Proves a node with WAL the new primary never had (timeline 1 past the switch at 4000) is rewound, not followed.
  const node = observation('node1', { upstream: null, streaming: false, flushedLsn: 6000 });
  const holder = member('node2', { role: 'primary', upstream: null, timeline: 2, history: [{ timeline: 1, endLsn: 4000 }], flushedLsn: 9000 });
  const made = decide(view(node, { record: lease({ holder: 'node2' }), members: [holder] }), config, now);
  assert.deepEqual(steps(made), ['rewind(node2)']);
  assert.match(made.reason, /^rewinding from node2: /);
});

test('a primary that sees another node holding the lease demotes at once', () => {
  // Proves one writer: an old primary coming back never keeps taking writes under someone else's lease.
  const made = decide(view(primaryObservation('node1'), { record: lease({ holder: 'node2' }) }), config, now);
  assert.deepEqual(steps(made), ['demote']);
  assert.deepEqual(alerts(made), ['critical:foreign-lease']);
});

test('a primary that cannot reach the store keeps writing while its lease is good beyond the margin', () => {
  // Proves a short store blip takes no writes down: 2500 ms left is more than the 1000 ms margin.
  const made = decide(view(primaryObservation('node1'), { unreachable: true }), config, now);
  assert.deepEqual(steps(made), []);
  assert.deepEqual(alerts(made), ['warning:lease-store-unreachable']);
});

test('a primary that cannot renew demotes before its lease ends unless its standbys confirm it', () => {
  // Proves invariant 4's rule: within the margin (2 × loop) of expiry, no confirmation means demote.
  const record = lease({ expiresAtMs: now + 900 });
  const made = decide(view(primaryObservation('node1'), { record, unreachable: true }), config, now);
  assert.deepEqual(steps(made), ['demote']);
  assert.deepEqual(alerts(made), ['critical:lease-lost']);
  assert.match(made.reason, /^demoting: I am node1; the lease store is unreachable, my lease ends in 900 ms/);
});

test('failsafe: a primary every reachable standby confirms keeps taking writes without its lease', () => {
  // Proves an outage of the lease store alone does not take writes down (DESIGN.md, hard cases).
  const record = lease({ expiresAtMs: now - 5000 });
  const failsafe = [
    { name: 'node2', confirms: true },
    { name: 'node3', confirms: true },
  ];
  const made = decide(view(primaryObservation('node1'), { record, unreachable: true, failsafe }), config, now);
  assert.deepEqual(steps(made), []);
  assert.deepEqual(alerts(made), ['warning:failsafe-active']);
  assert.equal(made.reason, 'no action: I am node1, the primary in failsafe: the lease store is unreachable and node2, node3 confirm me as their primary');
});

test('failsafe: one standby that no longer follows is enough to demote', () => {
  // Proves a partition (others see the store, and the lease end) is not mistaken for a store outage.
  const record = lease({ expiresAtMs: now - 5000 });
  const failsafe = [
    { name: 'node2', confirms: true },
    { name: 'node3', confirms: false },
  ];
  const made = decide(view(primaryObservation('node1'), { record, unreachable: true, failsafe }), config, now);
  assert.deepEqual(steps(made), ['demote']);
  assert.match(made.reason, /node3 no longer follows me/);
});

test('a standby confirms its primary only while nobody could replace it', () => {
  // Proves the failsafe answer: yes when the store is unreachable or the asker's term runs; no once it ended.
  const node = observation('node2');
  assert.equal(confirmsPrimary(view(node, { unreachable: true }), now, 'node1'), true);
  assert.equal(confirmsPrimary(view(node), now, 'node1'), true);
  assert.equal(confirmsPrimary(view(node, { record: ended }), now, 'node1'), false);
  assert.equal(confirmsPrimary(view(node, { unreachable: true }), now, 'node3'), false);
  const maintenance: MaintenanceRecord = { revision: '2', active: true, expiresAtMs: now + 60_000, reason: 'upgrade', owner: 'ops' };
  assert.equal(confirmsPrimary(view(node, { record: ended, maintenance }), now, 'node1'), true);
});

test('when the primary’s term ends a streaming standby first detaches, so its position becomes final', () => {
  // Proves no standby takes over while still receiving WAL from the old primary.
  const made = decide(view(observation('node2'), { record: ended, members: [oldPrimary] }), config, now);
  assert.deepEqual(steps(made), ['detach(node1)']);
});

test('the most advanced standby with final positions of N−k+1 synchronous standbys takes the lease and promotes', () => {
  // Proves invariant 5 on the happy path: ANY 1 of 2 needs both positions; node2 has the most.
  const node = observation('node2', { upstream: null, streaming: false, flushedLsn: 5900 });
  const made = decide(view(node, { record: ended, members: [oldPrimary, detached('node3', 5800)] }), config, now);
  assert.deepEqual(made.actions, [
    { type: 'acquireLease', revision: '7', maintenanceRevision: null, ttlMs: 3000 },
    { type: 'promote' },
  ]);
  assert.match(made.reason, /^promoting: the term of node1 ended; I am node2, the most advanced \(0\/170C\) of 2 of 2 synchronous standbys/);
});

test('a manual failover promotes its target when proven, even behind a better candidate, during maintenance, past the lag bound', () => {
  // Proves parley failover without --force follows the takeover proof and nothing else.
  const request: ManualFailoverRequest = { revision: '3', to: 'node3', force: false, expiresAtMs: now + 10_000 };
  const maintenance: MaintenanceRecord = { revision: '4', active: true, expiresAtMs: now + 60_000, reason: 'repair', owner: 'ops' };
  const me = observation('node3', { upstream: null, streaming: false, flushedLsn: 5900 });
  const made = decide(view(me, { record: ended, maintenance, manualFailover: request, members: [oldPrimary, detached('node2', 5900)] }), { ...config, maximumLagOnFailoverBytes: 0 }, now);
  assert.deepEqual(steps(made), ['acquireLease', 'promote', 'answerFailover']);
  assert.equal((made.actions[2] as { outcome: string }).outcome, 'accepted');
  // Still streaming: it detaches first, so that its own position is final.
  assert.deepEqual(steps(decide(view(observation('node3'), { record: ended, manualFailover: request, members: [oldPrimary] }), config, now)), ['detach(node1)']);
});

test('a manual failover that cannot be proven is refused naming the gap, and --force promotes with a critical alert', () => {
  // Proves the refusal names the LSN gap, and that force says what may be lost.
  const request: ManualFailoverRequest = { revision: '3', to: 'node3', force: false, expiresAtMs: now + 10_000 };
  const me = observation('node3', { upstream: null, streaming: false, flushedLsn: 5000 });
  const members = [oldPrimary, detached('node2', 5900)];
  const refused = decide(view(me, { record: ended, manualFailover: request, members }), config, now);
  assert.deepEqual(steps(refused), ['answerFailover']);
  assert.match((refused.actions[0] as { detail: string }).detail, /node2 has WAL up to 0\/170C that I lack \(mine ends at 0\/1388, 900 B behind\)/);
  const forced = decide(view(me, { record: ended, manualFailover: { ...request, force: true }, members }), config, now);
  assert.deepEqual(steps(forced), ['acquireLease', 'promote', 'answerFailover']);
  assert.deepEqual(alerts(forced), ['critical:manual-failover-forced']);
});

test('a manual failover is refused while a running primary holds the lease; a holder whose server is down lets it go', () => {
  // Proves manual failover is for when no healthy primary exists, including a primary down during maintenance.
  const request: ManualFailoverRequest = { revision: '3', to: 'node2', force: true, expiresAtMs: now + 10_000 };
  const runningPrimary = member('node1', { role: 'primary', upstream: null, streaming: false, publishedAtMs: now - 100 });
  const target = decide(view(observation('node2'), { manualFailover: request, members: [runningPrimary] }), config, now);
  assert.deepEqual(steps(target), ['answerFailover']);
  assert.match((target.actions[0] as { detail: string }).detail, /node1 is a running primary holding the lease; use parley switchover/);
  const maintenance: MaintenanceRecord = { revision: '4', active: true, expiresAtMs: now + 60_000, reason: 'repair', owner: 'ops' };
  const holderDown = decide(view(primaryObservation('node1', { running: false, downSinceMs: now - 1000 }), { maintenance, manualFailover: request }), config, now);
  assert.deepEqual(steps(holderDown), ['releaseLease']);
});

test('a standby behind another eligible one waits for it', () => {
  // Proves only the most advanced candidate goes.
  const node = observation('node2', { upstream: null, streaming: false, flushedLsn: 5800 });
  const made = decide(view(node, { record: ended, members: [oldPrimary, detached('node3', 5900)] }), config, now);
  assert.deepEqual(made.actions, []);
  assert.match(made.reason, /node3 .*better candidate/);
});

test('equal positions are broken by name, the same way on every node', () => {
  // Proves two equally advanced standbys never both try: node2 goes, node3 waits.
  const two = decide(view(observation('node2', { upstream: null, streaming: false, flushedLsn: 5800 }), { record: ended, members: [oldPrimary, detached('node3', 5800)] }), config, now);
  const three = decide(view(observation('node3', { upstream: null, streaming: false, flushedLsn: 5800 }), { record: ended, members: [oldPrimary, detached('node2', 5800)] }), config, now);
  assert.deepEqual(steps(two), ['acquireLease', 'promote']);
  assert.deepEqual(steps(three), []);
  assert.match(three.reason, /node2 is the best candidate/);
});

test('without the final positions of N−k+1 synchronous standbys nobody promotes, and the agents say why', () => {
  // Proves invariant 5's refusal: node3 last published before the term ended, so its position may still have grown.
  const node = observation('node2', { upstream: null, streaming: false, flushedLsn: 5900 });
  const stale = detached('node3', 5000, { publishedAtMs: now - 1500 });
  const made = decide(view(node, { record: ended, members: [oldPrimary, stale] }), config, now);
  assert.deepEqual(steps(made), []);
  assert.deepEqual(alerts(made), ['critical:no-safe-candidate']);
  assert.match(made.reason, /1 of 2 synchronous standbys have a final position \(need 2\); not yet: node3/);
});

test('a standby still streaming from the old primary does not count as final', () => {
  // Proves a position that can still grow is never compared.
  const node = observation('node2', { upstream: null, streaming: false, flushedLsn: 5900 });
  const streaming = member('node3', { flushedLsn: 5000, publishedAtMs: now - 200 });
  const made = decide(view(node, { record: ended, members: [oldPrimary, streaming] }), config, now);
  assert.deepEqual(steps(made), []);
  assert.deepEqual(alerts(made), ['critical:no-safe-candidate']);
});

test('a candidate further behind the last primary than maximumLagOnFailoverBytes waits and alerts', () => {
  // Proves the lag bound: 2 MiB behind with a 1 MiB maximum is refused.
  const node = observation('node2', { upstream: null, streaming: false, flushedLsn: 5900 });
  const ahead = { ...oldPrimary, flushedLsn: 5900 + 2 * 1_048_576 };
  const made = decide(view(node, { record: ended, members: [ahead, detached('node3', 5800)] }), config, now);
  assert.deepEqual(steps(made), []);
  assert.deepEqual(alerts(made), ['critical:no-safe-candidate']);
  assert.match(made.reason, /cannot promote node2: it is 2\.0 MiB behind node1's last known position/);
});

test('under ANY 2 of 3 standbys two final positions suffice', () => {
  // Proves the N−k+1 count: 3 − 2 + 1 = 2, so node5 being unknown does not block a failover.
  const big: DecideConfig = { ...config, members: ['node1', 'node2', 'node3', 'node4'], synchronousQuorum: 2 };
  const old = { ...oldPrimary, synchronous: desiredSynchronous(big, 'node1') };
  const node = observation('node2', { upstream: null, streaming: false, flushedLsn: 5900, synchronous: desiredSynchronous(big, 'node2') });
  const made = decide(view(node, { record: ended, members: [old, detached('node3', 5800)] }), big, now);
  assert.deepEqual(steps(made), ['acquireLease', 'promote']);
});

test('maintenance: no failover starts, standbys keep following, and the primary still renews', () => {
  // Proves invariant 6: with maintenance on, an ended term is reported but nobody detaches or takes over.
  const maintenance: MaintenanceRecord = { revision: '4', active: true, expiresAtMs: now + 60_000, reason: 'vacuum full', owner: 'alice' };
  const standby = decide(view(observation('node2'), { record: ended, maintenance, members: [oldPrimary] }), config, now);
  assert.deepEqual(steps(standby), []);
  assert.deepEqual(alerts(standby), ['warning:maintenance-holds-failover']);
  assert.equal(standby.reason, 'no action: maintenance is on (vacuum full, by alice); I am node2, following node1; no failover starts');
  const candidate = decide(view(observation('node2', { upstream: null, streaming: false }), { record: ended, maintenance, members: [oldPrimary, detached('node3', 10)] }), config, now);
  assert.deepEqual(steps(candidate), []);
  const primary = decide(view(primaryObservation('node1'), { maintenance }), config, now);
  assert.deepEqual(steps(primary), ['renewLease']);
  assert.match(primary.reason, /\(maintenance: vacuum full, by alice\)$/);
});

test('a takeover compares the maintenance revision it read, so maintenance cannot start in between', () => {
  // Proves the acquire action carries both revisions for the store's transaction.
  const maintenance: MaintenanceRecord = { revision: '9', active: false, expiresAtMs: now - 1, reason: 'done', owner: 'alice' };
  const node = observation('node2', { upstream: null, streaming: false, flushedLsn: 5900 });
  const made = decide(view(node, { record: ended, maintenance, members: [oldPrimary, detached('node3', 5800)] }), config, now);
  assert.deepEqual(made.actions[0], { type: 'acquireLease', revision: '7', maintenanceRevision: '9', ttlMs: 3000 });
});

test('a candidate holding the lease keeps promoting, never renewing past its deadline', () => {
  // Proves a frozen candidate still lets go in time: the renewal is capped at acquiredAt + deadline.
  const node = observation('node2', { upstream: null, streaming: false });
  const early = decide(view(node, { record: lease({ holder: 'node2', acquiredAtMs: now - 1000 }) }), config, now);
  assert.deepEqual(early.actions, [{ type: 'renewLease', revision: '7', ttlMs: 3000 }, { type: 'promote' }]);
  const late = decide(view(node, { record: lease({ holder: 'node2', acquiredAtMs: now - 28_000 }) }), config, now);
  assert.deepEqual(late.actions, [{ type: 'renewLease', revision: '7', ttlMs: 2000 }, { type: 'promote' }]);
});

test('a candidate that could not promote within the deadline fences itself, then releases the lease', () => {
  // Proves invariant 7's rollback and its order: demote first, release second, and an alert.
  const node = observation('node2', { upstream: null, streaming: false });
  const made = decide(view(node, { record: lease({ holder: 'node2', acquiredAtMs: now - 29_000 }) }), config, now);
  assert.deepEqual(steps(made), ['demote', 'releaseLease']);
  assert.deepEqual(made.actions[1], { type: 'releaseLease', revision: '7', rollback: true });
  assert.deepEqual(alerts(made), ['critical:failover-rolled-back']);
  assert.match(made.reason, /^rolling back: /);
});

test('after a rollback the failed candidate stands aside while another takes over, then may retry', () => {
  // Proves a broken node cannot keep the cluster without a primary: others go first, it retries after the cooldown.
  const rolled = lease({ holder: 'node2', released: true, rolledBack: true, expiresAtMs: now - 500 });
  const failed = detached('node2', 5900);
  const stopped = detached('node1', 5900, { running: false });
  const self = observation('node2', { upstream: null, streaming: false, flushedLsn: 5900 });
  assert.deepEqual(steps(decide(view(self, { record: rolled, members: [stopped] }), config, now)), []);
  // node3 is level with node2, which would win the tie by name, but node2 stands aside.
  const other = observation('node3', { upstream: null, streaming: false, flushedLsn: 5900 });
  assert.deepEqual(steps(decide(view(other, { record: rolled, members: [stopped, failed] }), config, now)), ['acquireLease', 'promote']);
  const expired = lease({ holder: 'node2', expiresAtMs: now - 500 });
  assert.deepEqual(steps(decide(view(other, { record: expired, members: [stopped, failed] }), config, now)), []);
  const later = now + rollbackCooldownMs(config);
  assert.deepEqual(steps(decide(view(self, { record: rolled, members: [stopped] }), config, later)), ['acquireLease', 'promote']);
});

test('an old primary whose term ended while the store was unreachable takes its lease back', () => {
  // Proves the failsafe's way out: nobody took the lease, so the same primary acquires it again.
  const made = decide(view(primaryObservation('node1'), { record: lease({ expiresAtMs: now - 4000 }) }), config, now);
  assert.deepEqual(made.actions, [{ type: 'acquireLease', revision: '7', maintenanceRevision: null, ttlMs: 3000 }]);
  assert.match(made.reason, /^acquiring the lease again/);
});

test('a demoted old primary that still was the last holder promotes without a quorum proof', () => {
  // Proves "the old primary may take it back": it has every write of its own term.
  const node = observation('node1', { upstream: null, streaming: false, flushedLsn: 6000 });
  const made = decide(view(node, { record: lease({ expiresAtMs: now - 4000 }) }), config, now);
  assert.deepEqual(steps(made), ['acquireLease', 'promote']);
});

test('a primary that lost a lease someone else took since demotes, even if nobody holds it now', () => {
  // Proves a zombie primary from an older term never takes writes again.
  const made = decide(view(primaryObservation('node1'), { record: lease({ holder: 'node3', expiresAtMs: now - 100 }) }), config, now);
  assert.deepEqual(steps(made), ['demote']);
});

test('a restarted node starts PostgreSQL as primary only when its term is unbroken', () => {
  // Proves restarts: as primary under its own lease (with the lease write first), otherwise as a standby.
  const down = primaryObservation('node1', { running: false });
  assert.deepEqual(steps(decide(view(down), config, now)), ['renewLease', 'start(primary)']);
  assert.deepEqual(steps(decide(view(down, { record: lease({ expiresAtMs: now - 1 }) }), config, now)), ['acquireLease', 'start(primary)']);
  assert.deepEqual(steps(decide(view(down, { record: lease({ holder: 'node2' }) }), config, now)), ['start(standby)']);
  assert.deepEqual(steps(decide(view(down, { unreachable: true }), config, now)), ['start(standby)']);
});

test('a primary whose PostgreSQL stays down past primaryStartTimeoutMs lets the lease go', () => {
  // Proves invariant 7 for a server that cannot start: restarts in place are tried, but only for so long.
  const trying = decide(view(primaryObservation('node1', { running: false, downSinceMs: now - 19_999 })), config, now);
  assert.deepEqual(steps(trying), ['renewLease', 'start(primary)']);
  const givenUp = decide(view(primaryObservation('node1', { running: false, downSinceMs: now - 20_000 })), config, now);
  assert.deepEqual(steps(givenUp), ['releaseLease']);
  assert.deepEqual(alerts(givenUp), ['critical:primary-start-failed']);
  assert.match(givenUp.reason, /releasing the lease: .* down 20000 ms/);
});

test('a standby on the newest timeline does not wait for an old primary whose extra WAL was never acknowledged', () => {
  // Proves candidacy reads only the acknowledged part of a final standby's WAL: node1, demoted with
  // WAL past the fork at 5000, is no better candidate than node3, which has node2's timeline 2.
  const newTimeline = { timeline: 2, history: [{ timeline: 1, endLsn: 5000 }] };
  const lastHolder = member('node2', { role: 'primary', upstream: null, ...newTimeline, flushedLsn: 7000, publishedAtMs: now - 1500, synchronous: { quorum: 1, standbys: ['node1', 'node3'] } });
  const oldPrimaryPastFork = detached('node1', 6000, { timeline: 1, history: [] });
  const me = observation('node3', { upstream: null, streaming: false, ...newTimeline, flushedLsn: 7000, replayedLsn: 7000 });
  const made = decide(view(me, { record: lease({ holder: 'node2', expiresAtMs: now - 1000 }), members: [lastHolder, oldPrimaryPastFork] }), config, now);
  assert.deepEqual(steps(made), ['acquireLease', 'promote'], made.reason);
});

test('during maintenance no agent starts or rewinds its PostgreSQL, and the primary keeps its lease', () => {
  // Proves invariant 6's "hands off": an operator may stop servers on purpose while maintenance is on.
  const maintenance: MaintenanceRecord = { revision: '4', active: true, expiresAtMs: now + 60_000, reason: 'kernel upgrade', owner: 'ops' };
  const primaryDown = primaryObservation('node1', { running: false, downSinceMs: now - 60_000 });
  const held = decide(view(primaryDown, { maintenance }), config, now);
  assert.deepEqual(steps(held), ['renewLease']);
  assert.match(held.reason, /left alone during maintenance \(maintenance: kernel upgrade, by ops\)/);
  assert.deepEqual(steps(decide(view(primaryDown, { maintenance, record: lease({ expiresAtMs: now - 1 }) }), config, now)), ['acquireLease']);
  const standbyDown = observation('node2', { running: false });
  assert.deepEqual(steps(decide(view(standbyDown, { maintenance }), config, now)), []);
  assert.deepEqual(steps(decide(view(standbyDown, { maintenance, unreachable: true }), config, now)), []);
  // Once it ends, the primary starts its server in place (the downtime under maintenance is the shell's to forget).
  const ended = { ...maintenance, active: false };
  assert.deepEqual(steps(decide(view(primaryObservation('node1', { running: false, downSinceMs: now - 500 }), { maintenance: ended }), config, now)), ['renewLease', 'start(primary)']);
});

test('a lease released by the supervisor after a proven death ends the term at once', () => {
  // Proves the fast path of DESIGN.md's "faster than a lease's TTL": no waiting for expiry.
  const released = lease({ released: true, expiresAtMs: now - 10 });
  const made = decide(view(observation('node2'), { record: released, members: [oldPrimary] }), config, now);
  assert.deepEqual(steps(made), ['detach(node1)']);
});

test('while the store is unreachable a standby keeps following and never takes over', () => {
  // Proves a partitioned standby does nothing that needs the lease.
  const made = decide(view(observation('node2'), { record: ended, unreachable: true }), config, now);
  assert.deepEqual(made.actions, []);
  assert.equal(made.reason, 'no action: the lease store is unreachable; I am node2, following node1');
});

test('a primary running with the wrong synchronous setting sets ANY k of the other members', () => {
  // Proves the primary keeps synchronous_standby_names in line with the configured quorum.
  const made = decide(view(primaryObservation('node1', { synchronous: null })), config, now);
  assert.deepEqual(made.actions[1], { type: 'setSynchronousStandbyNames', config: { quorum: 1, standbys: ['node2', 'node3'] } });
});

test('a view from the wrong node or a config that breaks the margin is a bug, reported by name', () => {
  // Proves decide() asserts its inputs instead of deciding on nonsense.
  assert.throws(() => decide(view(observation('node9')), config, now), /node "node9" is not a member/);
  assert.throws(() => decide(view(observation('node2')), { ...config, leaseTtlMs: 1000 }, now), /leaseTtlMs \(1000\) must exceed/);
});

test('the decision core is pure: no node:, pg or clock in its files', () => {
  // Proves DESIGN.md's rule for pure code by reading the sources.
  for (const file of ['decide.ts', 'types.ts', 'wal.ts']) {
    const source = readFileSync(new URL(file, import.meta.url), 'utf8');
    assert.doesNotMatch(source, /from '(node:|pg)/, file);
    assert.doesNotMatch(source, /Date\.now|new Date|Math\.random|performance\.now|process\./, file);
  }
});

test('a standby under maintenance of its own leaves the primary’s synchronous set, only while the others can carry the quorum', () => {
  // Proves point 4 of node maintenance: the set narrows, and never to one that would block writes.
  const resting: MaintenanceRecord = { revision: 'm1', active: true, expiresAtMs: now + 60_000, reason: 'kernel update', owner: 'ops@host', node: 'node2' };
  const primary = primaryObservation('node1');
  const narrowed = decide(view(primary, { maintenance: resting, members: [member('node2'), member('node3')] }), config, now);
  const set = narrowed.actions.find((a) => a.type === 'setSynchronousStandbyNames');
  assert.deepEqual(set && set.type === 'setSynchronousStandbyNames' ? set.config : 'none', { quorum: 1, standbys: ['node3'] });
  // node3 not streaming: taking node2 out would leave no standby to acknowledge, so it stays in.
  const kept = decide(view(primary, { maintenance: resting, members: [member('node2'), member('node3', { streaming: false })] }), config, now);
  assert.equal(kept.actions.some((a) => a.type === 'setSynchronousStandbyNames'), false, kept.reason);
  // Maintenance over: the full set comes back.
  const narrow = primaryObservation('node1', { synchronous: { quorum: 1, standbys: ['node3'] } });
  const widened = decide(view(narrow, { members: [member('node2'), member('node3')] }), config, now);
  const back = widened.actions.find((a) => a.type === 'setSynchronousStandbyNames');
  assert.deepEqual(back && back.type === 'setSynchronousStandbyNames' ? back.config : 'none', { quorum: 1, standbys: ['node2', 'node3'] });
});

test('a narrowed synchronous set is published only after the remaining standbys flushed past the narrowing', () => {
  // Proves the rule that keeps takeovers sound (simulation seeds 91390, 12041): until k of the
  // narrower set have every write acknowledged under the wider one, proofs run against the wider.
  const narrow = { quorum: 1, standbys: ['node3'] };
  const primary = primaryObservation('node1', { synchronous: narrow, flushedLsn: 9000 });
  const behind = settleSynchronous(null, primary, config, (name) => (name === 'node3' ? 8000 : null));
  assert.deepEqual(behind.published, { quorum: 1, standbys: ['node2', 'node3'] }, 'the full set while node3 is behind');
  assert.equal(behind.settling?.sinceLsn, 9000);
  // Later ticks: node3 reaches 9000 (the flush at the narrowing), while the primary has moved on.
  const later = primaryObservation('node1', { synchronous: narrow, flushedLsn: 12_000 });
  const still = settleSynchronous(behind.settling, later, config, () => 8999);
  assert.deepEqual(still.published?.standbys, ['node2', 'node3']);
  const caught = settleSynchronous(still.settling, later, config, (name) => (name === 'node3' ? 9000 : null));
  assert.deepEqual(caught.published, narrow, 'the narrower set once node3 has everything acknowledged before');
  const stays = settleSynchronous(caught.settling, later, config, () => null);
  assert.deepEqual(stays.published, narrow, 'settled stays settled while the setting is unchanged');
  // An agent that restarts remembers nothing, and settles again from its current position.
  assert.deepEqual(settleSynchronous(null, later, config, () => 9000).published?.standbys, ['node2', 'node3']);
  // The full set, or a standby, publishes what it runs with and remembers nothing.
  const full = primaryObservation('node1');
  assert.deepEqual(settleSynchronous(caught.settling, full, config, () => null), { settling: null, published: full.synchronous });
  assert.equal(settleSynchronous(null, observation('node2'), config, () => null).settling, null);
});
