// Proves, by seeded simulation, that decide() keeps DESIGN.md's invariants 4–7 under random fault
// schedules, that every run replays exactly from its seed, and that the checker does catch a broken core.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decide, maintenanceActive, termActive } from './decide.ts';
import { Prng } from './prng.ts';
import { describeSchedule, describeViolation, parseSchedule, replay, scheduleFor, simulate, simulateMany, simulateSchedule } from './simulator.ts';
import type { DecideFunction } from './types.ts';

const scheduleCount = 10_000;

test(`${scheduleCount} seeded fault schedules break no invariant`, (t) => {
  // Proves the core's safety and liveness across kills, freezes, partitions, store outages, lag, maintenance and failed promotions.
  const result = simulateMany(1, scheduleCount);
  t.diagnostic(`${result.schedules} schedules, ${result.decisions} decisions, ${result.promotions} promotions, ${result.rollbacks} rollbacks`);
  assert.deepEqual(result.violations.map(describeViolation), []);
  // The schedules must exercise what they claim to: failovers and rollbacks happen.
  assert.ok(result.promotions > scheduleCount / 2, `only ${result.promotions} promotions`);
  assert.ok(result.rollbacks > 0, 'no failover was ever rolled back');
});

test('a seed replays exactly: same schedule, same decisions, same outcome', () => {
  // Proves determinism, which makes every failing seed a reproducible bug report.
  for (const seed of [1, 42, 4_000_000_000]) {
    const first = replay(seed);
    const second = replay(seed);
    assert.deepEqual(second.trace, first.trace);
    assert.deepEqual(second.stats, first.stats);
    assert.deepEqual(simulate(seed).stats, first.stats);
    assert.ok(first.trace.length > 10);
  }
});

test('a schedule written out by describeSchedule reads back to the same schedule', () => {
  // Proves a failing schedule can be pasted into a regression test verbatim.
  for (const seed of [3, 77, 2024]) {
    const schedule = scheduleFor(seed);
    assert.deepEqual(parseSchedule(describeSchedule(schedule)), schedule);
  }
});

/** A core that promotes as soon as the lease ends: no detach, no quorum of final positions, no lag bound. */
const promoteWithoutProof: DecideFunction = (view, config, now) => {
  const { node, lease } = view;
  if (lease.known && lease.record !== null && node.running && node.role === 'standby' && lease.record.holder !== node.name) {
    if (!termActive(lease.record, now) && !maintenanceActive(view.maintenance, now)) {
      return {
        actions: [
          { type: 'acquireLease', revision: lease.record.revision, maintenanceRevision: view.maintenance?.revision ?? null, ttlMs: config.leaseTtlMs },
          { type: 'promote' },
        ],
        reason: 'broken: promoting without proof',
      };
    }
  }
  return decide(view, config, now);
};

test('the simulator catches a core that promotes without quorum evidence, and replays it', () => {
  // Proves the checker can fail: an unproven promotion loses acknowledged writes or makes two writers.
  const result = simulateMany(1, 500, { decide: promoteWithoutProof });
  assert.ok(result.violations.length > 0, 'the broken core was not caught');
  const kinds = new Set(result.violations.map((v) => v.invariant));
  assert.ok(kinds.has('acknowledged-write-lost'), [...kinds].join(', '));
  const first = result.violations[0]!;
  const again = replay(first.seed, { decide: promoteWithoutProof });
  assert.deepEqual(again.violation, first);
  assert.match(again.trace.at(-1)!, /VIOLATION/);
});

test('the simulator catches a core that ignores maintenance', () => {
  // Proves invariant 6 is checked: a takeover while maintenance is on is reported as such.
  const ignoring: DecideFunction = (view, config, now) =>
    decide({ ...view, maintenance: view.maintenance === null ? null : { ...view.maintenance, active: false } }, config, now);
  const result = simulateMany(1, 500, { decide: ignoring });
  assert.ok(result.violations.some((v) => v.invariant === 'failover-during-maintenance'));
});

test('the simulator catches a core that never rolls a failed promotion back', () => {
  // Proves invariant 7 is checked: a candidate that keeps the lease past the deadline is reported.
  const stubborn: DecideFunction = (view, config, now) => {
    const made = decide(view, config, now);
    if (!made.actions.some((a) => a.type === 'releaseLease')) return made;
    const record = view.lease.known ? view.lease.record : null;
    const revision = record?.revision ?? '0';
    return { actions: [{ type: 'renewLease', revision, ttlMs: config.leaseTtlMs }, { type: 'promote' }], reason: 'broken: no rollback' };
  };
  const result = simulateMany(1, 1500, { decide: stubborn });
  assert.ok(result.violations.some((v) => v.invariant === 'failover-deadline'));
});

test('the simulator catches a primary that never demotes', () => {
  // Proves the quiet-period check: a primary that ignores losing its lease leaves two primaries behind.
  const clinging: DecideFunction = (view, config, now) => {
    const made = decide(view, config, now);
    return view.node.role === 'primary' && made.actions.some((a) => a.type === 'demote') ? { actions: [], reason: 'broken: never demote' } : made;
  };
  const result = simulateMany(1, 300, { decide: clinging });
  assert.ok(result.violations.some((v) => v.invariant === 'no-primary-after-quiet-period'));
});

// Schedules that once broke an invariant, kept verbatim (see docs/failover-core.md, "Regressions").
const regressions: readonly { readonly what: string; readonly line: string }[] = [
  {
    what: 'a standby that followed a new timeline before reaching its switch point, then was promoted (history with a switch point before an earlier one)',
    line: 'seed 99392: 4 nodes, ANY 3, ttl 1500 ms, loop 500 ms, deadline 4500 ms, max lag 16777216 B, faults until 30000 ms, end 49000 ms; 7200:kill(primary) 7700:lag(node3) 7700:kill(primary) 8600:restart(primary) 10700:restart(primary) 18500:kill(primary) 19200:lag(node2) 20600:maintenance-on[2100] 22000:kill(primary) 22900:freeze(node2) 23300:maintenance-off 23700:late-reads(node3)[300] 29100:restart(primary) 30000:timely-reads(node3) 30000:restart(primary)',
  },
  {
    what: 'a hung promotion on a frozen candidate that completed after it had followed the new primary',
    line: 'seed 3292: 3 nodes, ANY 1, ttl 3000 ms, loop 500 ms, deadline 12000 ms, max lag 16777216 B, faults until 20000 ms, end 51000 ms; 1400:late-reads(node2)[1300] 2300:kill-agent(node1) 3500:promote-hang(node2) 8400:freeze(primary) 11800:promote-ok(node2) 13100:timely-reads(node2) 13700:restart(node1) 18400:store-down 18700:thaw(primary) 20000:store-up',
  },
  {
    what: 'a hung promotion on a partitioned node completing without the lease',
    line: 'seed 29713: 3 nodes, ANY 1, ttl 1500 ms, loop 500 ms, deadline 3000 ms, max lag 1048576 B, faults until 20000 ms, end 37500 ms; 2700:promote-hang(node2) 4900:kill(primary) 7600:partition(node2) 8300:store-down 8300:promote-ok(node2) 10800:store-down 12800:kill-agent(primary) 13500:store-up 13500:restart(primary) 20000:store-up',
  },
  {
    what: 'a rolled-back candidate taking the lease again as soon as its previous term expired',
    line: 'seed 11437: 3 nodes, ANY 2, ttl 2000 ms, loop 500 ms, deadline 6000 ms, max lag 0 B, faults until 30000 ms, end 52000 ms; 10000:promote-hang(node1) 17700:kill(primary) 19300:restart(primary) 19300:kill(primary) 19500:restart(primary) 28500:store-down 29800:store-up',
  },
  {
    what: 'a primary whose PostgreSQL cannot start again kept renewing its lease (now released after primaryStartTimeoutMs)',
    line: 'seed 1: 3 nodes, ANY 1, ttl 2000 ms, loop 500 ms, deadline 6000 ms, max lag 16777216 B, faults until 10000 ms, end 40000 ms; 2000:break-postgres(primary); start timeout 6000 ms',
  },
  {
    what: 'a demoted old primary with WAL past the fork and the new timeline\'s standby each waiting for the other',
    line: 'seed 8972: 3 nodes, ANY 1, ttl 5000 ms, loop 500 ms, deadline 10000 ms, max lag 16777216 B, faults until 10000 ms, end 60000 ms; 700:freeze(primary) 2300:lag(node2) 4300:freeze(primary) 5100:lag-end(node2) 8200:maintenance-on[19600] 8500:kill-agent(primary) 9300:thaw(primary) 9800:break-postgres(primary) 10000:restart(primary); start timeout 15000 ms',
  },
  {
    what: 'the same standoff among five nodes after a primary broke for good',
    line: 'seed 2750: 5 nodes, ANY 1, ttl 3000 ms, loop 500 ms, deadline 12000 ms, max lag 16777216 B, faults until 30000 ms, end 70000 ms; 3000:lost-replies(primary) 3200:freeze(primary) 5200:lag(node2) 9300:thaw(primary) 9400:replies-ok(primary) 16700:lag-end(node2) 20100:break-postgres(primary) 21000:kill-postgres(primary) 23400:kill(primary) 30000:restart(primary); start timeout 9000 ms',
  },
  {
    what: 'a primary that took a standby under maintenance out of its synchronous set published the narrower set, and a takeover proven against it lost writes that standby alone had acknowledged',
    line: 'seed 91390: 3 nodes, ANY 1, ttl 2000 ms, loop 500 ms, deadline 6000 ms, max lag 16777216 B, faults until 30000 ms, end 56000 ms; 4600:freeze(node3) 9900:node-maintenance-on(node2)[10600] 10400:kill(primary) 10600:thaw(node3) 12600:maintenance-on[8800] 14700:maintenance-off 18600:maintenance-off(node2) 19600:restart(primary); start timeout 4000 ms',
  },
  {
    what: 'a primary that narrowed its synchronous set (a standby under maintenance) and died before the rest caught up: the narrower set must not be published until they have',
    line: 'seed 12041: 3 nodes, ANY 1, ttl 5000 ms, loop 500 ms, deadline 10000 ms, max lag 1048576 B, faults until 10000 ms, end 55000 ms; 3600:lag(node3) 3600:kill(primary) 4000:kill(primary) 4100:node-maintenance-on(node1)[10900] 5500:lag(node2) 5500:kill(primary) 6000:maintenance-off(node1) 7000:break-postgres(primary) 8000:kill-postgres(primary) 8400:restart(primary) 9100:lag(node3) 9100:kill(primary) 10000:restart(primary) 10000:restart(primary) 10000:restart(primary) 10000:repair; start timeout 10000 ms',
  },
];

for (const regression of regressions) {
  test(`regression: ${regression.what}`, () => {
    // Proves a schedule that once broke an invariant no longer does.
    const result = simulateSchedule(parseSchedule(regression.line));
    assert.equal(result.violation === null ? null : describeViolation(result.violation), null);
  });
}

test('the simulator’s generator is mulberry32: fixed numbers for a fixed seed', () => {
  // Proves the random stream is stable across machines and Node versions, so seeds stay meaningful
  // (mulberry32(1) starts 0.6270739405881613, as in the reference implementation).
  const rng = new Prng(1);
  const numbers = [rng.next(), rng.next(), rng.next()].map((x) => Math.floor(x * 1e9));
  assert.deepEqual(numbers, [627073940, 2735721, 527447039]);
  const picks = new Prng(7);
  for (let i = 0; i < 1000; i += 1) {
    const n = picks.int(3, 5);
    assert.ok(n >= 3 && n <= 5 && Number.isInteger(n));
  }
});
