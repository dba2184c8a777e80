// Proves admission control by priority without a clock: sends first, then reads, then typing; a full
// queue and a stalled one shed the lowest class first; nothing waits past its class's bound, the short
// one once its queue stands (overload) and only then; every request is answered exactly once; and a
// free connection never sits idle while a request waits.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { createAdmissionQueue, lowerOf, priorities, rankOf, retryAfterSecondsFor, type AdmissionLimits, type Decision, type Priority } from './admission-core.ts';

// Standing bounds out of reach, for the examples about the long ones.
const never = { intervalMs: 1e9, waitMaxMs: { send: 20, read: 10, typing: 5 } };
const limits: AdmissionLimits = { inFlightMax: 1, waitingMax: 3, waitMaxMs: { send: 3000, read: 1000, typing: 250 }, standing: never };

const ids = (decision: Decision) => ({ admitted: decision.admitted, shed: decision.shed.map((s) => `${s.id}:${s.priority}:${s.reason}`) });

test('requests start at once while connections are free, then wait and start sends first, oldest first', () => {
  // Proves the order a saturated pool hands out connections in.
  const queue = createAdmissionQueue({ ...limits, inFlightMax: 2, waitingMax: 10 });
  assert.deepEqual(ids(queue.arrive(1, 'typing', 0)), { admitted: [1], shed: [] });
  assert.deepEqual(ids(queue.arrive(2, 'read', 0)), { admitted: [2], shed: [] });
  for (const [id, priority] of [[3, 'typing'], [4, 'read'], [5, 'send'], [6, 'read'], [7, 'send']] as const) {
    assert.deepEqual(ids(queue.arrive(id, priority, 10)), { admitted: [], shed: [] });
  }
  assert.deepEqual(queue.snapshot(), { inFlight: 2, waiting: { send: 2, read: 2, typing: 1 } });
  const order = [5, 7, 4, 6, 3].map(() => queue.finish(20).admitted);
  assert.deepEqual(order, [[5], [7], [4], [6], [3]]);
  assert.deepEqual(queue.snapshot(), { inFlight: 2, waiting: { send: 0, read: 0, typing: 0 } });
});

test('a full queue makes room at the bottom: the oldest of the lowest class goes, never a send for a read', () => {
  // Proves who is shed when the queue is full, class by class.
  const queue = createAdmissionQueue(limits);
  queue.arrive(1, 'send', 0); // in flight
  queue.arrive(2, 'typing', 0);
  queue.arrive(3, 'read', 0);
  queue.arrive(4, 'typing', 0);
  assert.deepEqual(ids(queue.arrive(5, 'send', 1)), { admitted: [], shed: ['2:typing:queue-full'] }, 'a send displaces the oldest typing');
  assert.deepEqual(ids(queue.arrive(6, 'read', 2)), { admitted: [], shed: ['4:typing:queue-full'] });
  assert.deepEqual(ids(queue.arrive(7, 'typing', 3)), { admitted: [], shed: ['7:typing:queue-full'] }, 'a typing arriving at a queue of reads and sends goes itself');
  assert.deepEqual(ids(queue.arrive(8, 'read', 4)), { admitted: [], shed: ['3:read:queue-full'] }, 'equal class: the oldest goes, the newest waits');
  assert.deepEqual(ids(queue.arrive(9, 'send', 5)), { admitted: [], shed: ['6:read:queue-full'] });
  assert.deepEqual(ids(queue.arrive(10, 'send', 6)), { admitted: [], shed: ['8:read:queue-full'] });
  assert.deepEqual(ids(queue.arrive(11, 'send', 7)), { admitted: [], shed: ['5:send:queue-full'] }, 'only sends left: the oldest send goes');
  assert.deepEqual(queue.snapshot(), { inFlight: 1, waiting: { send: 3, read: 0, typing: 0 } });
});

test('a request that waited its class bound is shed; a stalled send takes every lower class with it', () => {
  // Proves the wait bounds per class and that a send never goes while a lower class still waits.
  const queue = createAdmissionQueue({ ...limits, waitingMax: 10 });
  queue.arrive(1, 'send', 0); // in flight, and stuck
  queue.arrive(2, 'send', 0);
  queue.arrive(3, 'typing', 100);
  queue.arrive(4, 'read', 100);
  assert.equal(queue.nextDeadlineMs(), 350);
  assert.deepEqual(ids(queue.expire(349)), { admitted: [], shed: [] });
  assert.deepEqual(ids(queue.expire(350)), { admitted: [], shed: ['3:typing:wait-timeout'] });
  assert.equal(queue.nextDeadlineMs(), 1100);
  assert.deepEqual(ids(queue.expire(1100)), { admitted: [], shed: ['4:read:wait-timeout'] });
  queue.arrive(5, 'read', 2900);
  queue.arrive(6, 'typing', 2950);
  queue.arrive(7, 'send', 2990);
  assert.equal(queue.nextDeadlineMs(), 3000);
  assert.deepEqual(ids(queue.expire(3000)), { admitted: [], shed: ['6:typing:stalled', '5:read:stalled', '2:send:wait-timeout'] });
  assert.deepEqual(queue.snapshot(), { inFlight: 1, waiting: { send: 1, read: 0, typing: 0 } }, 'a send that still has time keeps waiting');
  assert.deepEqual(ids(queue.finish(3001)), { admitted: [7], shed: [] });
});

test('expiry is applied before every decision, so a late timer never lets a stale request start', () => {
  // Proves that the shell's timer firing late changes nothing: finish() expires first.
  const queue = createAdmissionQueue(limits);
  queue.arrive(1, 'send', 0);
  queue.arrive(2, 'read', 0);
  queue.arrive(3, 'send', 500);
  assert.deepEqual(ids(queue.finish(5000)), { admitted: [], shed: ['2:read:wait-timeout', '3:send:wait-timeout'] });
  assert.deepEqual(queue.snapshot(), { inFlight: 0, waiting: { send: 0, read: 0, typing: 0 } });
});

test('evictAll removes everyone waiting, lowest first', () => {
  const queue = createAdmissionQueue({ ...limits, waitingMax: 10 });
  queue.arrive(1, 'send', 0);
  queue.arrive(2, 'read', 0);
  queue.arrive(3, 'send', 0);
  queue.arrive(4, 'typing', 0);
  assert.deepEqual(queue.evictAll(), [4, 2, 3]);
  assert.deepEqual(queue.snapshot(), { inFlight: 1, waiting: { send: 0, read: 0, typing: 0 } });
  assert.equal(queue.nextDeadlineMs(), undefined);
  queue.finish(1);
  assert.throws(() => queue.finish(2), /without a request in flight/);
});

test('no waiting at all: a busy pool sheds every arrival at once', () => {
  const queue = createAdmissionQueue({ ...limits, waitingMax: 0 });
  assert.deepEqual(ids(queue.arrive(1, 'typing', 0)), { admitted: [1], shed: [] });
  assert.deepEqual(ids(queue.arrive(2, 'send', 0)), { admitted: [], shed: ['2:send:queue-full'] });
});

test('limits are checked, and the helpers order classes', () => {
  assert.throws(() => createAdmissionQueue({ ...limits, inFlightMax: 0 }), /inFlightMax/);
  assert.throws(() => createAdmissionQueue({ ...limits, waitingMax: -1 }), /waitingMax/);
  assert.throws(() => createAdmissionQueue({ ...limits, waitMaxMs: { ...limits.waitMaxMs, read: Number.NaN } }), /waitMaxMs.read/);
  assert.throws(() => createAdmissionQueue({ ...limits, waitMaxMs: { ...limits.waitMaxMs, typing: 0 } }), /waitMaxMs.typing/);
  assert.throws(() => createAdmissionQueue({ ...limits, standing: { ...never, intervalMs: 0 } }), /standing.intervalMs/);
  assert.throws(() => createAdmissionQueue({ ...limits, standing: { ...never, waitMaxMs: { ...never.waitMaxMs, send: -1 } } }), /standing.waitMaxMs.send/);
  assert.deepEqual(priorities.map(rankOf), [0, 1, 2]);
  assert.equal(lowerOf('send', 'read'), 'read');
  assert.equal(lowerOf('typing', 'read'), 'typing');
  assert.ok(retryAfterSecondsFor('send') <= retryAfterSecondsFor('read') && retryAfterSecondsFor('read') <= retryAfterSecondsFor('typing'));
});

// One step of a random schedule: a request arrives, one in flight finishes, or the timer fires.
type Step = { kind: 'arrive'; priority: Priority; dtMs: number } | { kind: 'finish'; dtMs: number } | { kind: 'expire'; dtMs: number };

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('arrive' as const), priority: fc.constantFrom(...priorities), dtMs: fc.nat(50) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('finish' as const), dtMs: fc.nat(200) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('expire' as const), dtMs: fc.nat(1500) }) },
);

const bounds = (max: number) => fc.record({ send: fc.integer({ min: 1, max }), read: fc.integer({ min: 1, max }), typing: fc.integer({ min: 1, max }) });
const limitsArbitrary: fc.Arbitrary<AdmissionLimits> = fc.record({
  inFlightMax: fc.integer({ min: 1, max: 4 }),
  waitingMax: fc.integer({ min: 0, max: 8 }),
  waitMaxMs: bounds(3000),
  standing: fc.record({ intervalMs: fc.integer({ min: 1, max: 1000 }), waitMaxMs: bounds(400) }),
});

test('for any schedule: priority order, lowest shed first, bounded waits, every request answered once', () => {
  // Proves the invariants against a model of the queue, for random limits and schedules (with the
  // wait bounds in any order, not only send ≥ read ≥ typing). The model keeps its own account of
  // when each class stands, from the rule at the top of admission-core.ts.
  fc.assert(
    fc.property(limitsArbitrary, fc.array(stepArbitrary, { maxLength: 200 }), (lim, steps) => {
      const queue = createAdmissionQueue(lim);
      const waiting = new Map<number, { priority: Priority; sinceMs: number }>();
      const answered = new Map<number, 'admitted' | 'shed'>();
      const aboveSince: Record<Priority, number | undefined> = { send: undefined, read: undefined, typing: undefined };
      const sizeThen: Record<Priority, number> = { send: 0, read: 0, typing: 0 };
      const stands: Record<Priority, boolean> = { send: false, read: false, typing: false };
      let inFlight = 0;
      let nowMs = 0;
      let nextId = 1;

      const shortMs = (p: Priority): number => Math.min(lim.waitMaxMs[p], lim.standing.waitMaxMs[p]);
      const sizeOf = (p: Priority): number => [...waiting.values()].filter((w) => w.priority === p).length;
      const willStand = (p: Priority): boolean => aboveSince[p] !== undefined && sizeOf(p) >= sizeThen[p];
      const standing = (p: Priority, at: number): boolean => stands[p] || (willStand(p) && at - aboveSince[p]! >= lim.standing.intervalMs);
      const boundAt = (p: Priority, at: number): number => (standing(p, at) ? shortMs(p) : lim.waitMaxMs[p]);
      const observe = (p: Priority): void => {
        if (aboveSince[p] !== undefined) return;
        aboveSince[p] = nowMs;
        sizeThen[p] = sizeOf(p);
      };
      const forget = (p: Priority): void => {
        aboveSince[p] = undefined;
        stands[p] = false;
      };
      const oldest = (p: Priority): { id: number; sinceMs: number } | undefined => {
        let found: { id: number; sinceMs: number } | undefined;
        for (const [id, w] of waiting) if (w.priority === p && (found === undefined || id < found.id)) found = { id, sinceMs: w.sinceMs };
        return found;
      };

      /** Before each operation: a class whose interval ended with its queue not shrunk stands. */
      function settle(): void {
        for (const p of priorities) stands[p] = standing(p, nowMs);
      }

      function apply(decision: Decision, arrival?: { id: number; priority: Priority }): void {
        // The arrival joins after this step's expiry and before the queue-full decision about it.
        const join = (): void => {
          if (arrival && !waiting.has(arrival.id) && !answered.has(arrival.id)) waiting.set(arrival.id, { priority: arrival.priority, sinceMs: nowMs });
        };
        const timedOutRanks = decision.shed.filter((s) => s.reason === 'wait-timeout').map((s) => rankOf(s.priority));
        for (const shed of decision.shed) {
          if (shed.reason === 'queue-full') join();
          const entry = waiting.get(shed.id);
          assert.ok(entry, `shed ${shed.id} was not waiting`);
          assert.equal(entry.priority, shed.priority);
          assert.ok(!answered.has(shed.id), `${shed.id} answered twice`);
          waiting.delete(shed.id);
          answered.set(shed.id, 'shed');
          // A class is shed only when no lower class is left waiting.
          for (const other of waiting.values()) assert.ok(rankOf(other.priority) <= rankOf(shed.priority), `${shed.priority} shed while a ${other.priority} waits`);
          if (shed.reason === 'wait-timeout') assert.ok(entry.sinceMs + boundAt(shed.priority, nowMs) <= nowMs, 'shed before its bound');
          if (shed.reason === 'stalled') assert.ok(timedOutRanks.some((rank) => rank <= rankOf(shed.priority)), 'stalled without a higher class timing out');
          // The arrival is in the model already: a full queue holds waitingMax besides it.
          if (shed.reason === 'queue-full') assert.ok(arrival && waiting.size === lim.waitingMax, 'queue-full shed while there was room');
          assert.notEqual(shed.reason, 'standing-queue');
        }
        join();
        for (const id of decision.admitted) {
          const entry = waiting.get(id);
          assert.ok(entry, `admitted ${id} was not waiting`);
          assert.ok(!answered.has(id), `${id} answered twice`);
          // The oldest of the highest class waiting.
          for (const [otherId, other] of waiting) {
            if (otherId === id) continue;
            assert.ok(rankOf(other.priority) > rankOf(entry.priority) || (other.priority === entry.priority && otherId > id), `${id} (${entry.priority}) overtook ${otherId} (${other.priority})`);
          }
          waiting.delete(id);
          answered.set(id, 'admitted');
          inFlight += 1;
          if (arrival?.id === id) continue;
          // The standing evidence of this hand-out.
          for (const p of priorities) {
            if (p === entry.priority) {
              if (nowMs - entry.sinceMs < lim.standing.waitMaxMs[p] / 2) forget(p);
              else observe(p);
            } else {
              const head = oldest(p);
              if (head !== undefined && nowMs - head.sinceMs >= lim.standing.waitMaxMs[p] / 2) observe(p);
            }
          }
        }
        for (const p of priorities) if (oldest(p) === undefined) forget(p);
        // The queue's counts are the model's, and they respect the limits.
        const snapshot = queue.snapshot();
        assert.equal(snapshot.inFlight, inFlight);
        for (const priority of priorities) assert.equal(snapshot.waiting[priority], [...waiting.values()].filter((w) => w.priority === priority).length);
        for (const priority of priorities) assert.equal(queue.standing(priority, nowMs), standing(priority, nowMs), `standing(${priority})`);
        assert.equal(queue.overloaded('typing', nowMs), priorities.some((p) => standing(p, nowMs)));
        assert.equal(queue.overloaded('send', nowMs), standing('send', nowMs));
        assert.ok(inFlight <= lim.inFlightMax);
        assert.ok(waiting.size <= lim.waitingMax);
        assert.ok(waiting.size === 0 || inFlight === lim.inFlightMax, 'a connection idles while a request waits');
        for (const w of waiting.values()) assert.ok(w.sinceMs + boundAt(w.priority, nowMs) > nowMs, 'a request waits past its bound');
        // The next deadline: each request's long bound, or its short one once its class stands.
        const deadline = (w: { priority: Priority; sinceMs: number }): number => {
          const long = w.sinceMs + lim.waitMaxMs[w.priority];
          if (stands[w.priority]) return Math.min(long, w.sinceMs + shortMs(w.priority));
          if (!willStand(w.priority)) return long;
          return Math.min(long, Math.max(w.sinceMs + shortMs(w.priority), aboveSince[w.priority]! + lim.standing.intervalMs));
        };
        const next = queue.nextDeadlineMs();
        if (waiting.size === 0) assert.equal(next, undefined);
        else assert.equal(next, Math.min(...[...waiting.values()].map(deadline)));
      }

      for (const step of steps) {
        nowMs += step.dtMs;
        if (step.kind === 'arrive') {
          const id = nextId++;
          settle();
          apply(queue.arrive(id, step.priority, nowMs), { id, priority: step.priority });
        } else if (step.kind === 'finish') {
          if (inFlight === 0) continue;
          inFlight -= 1;
          settle();
          apply(queue.finish(nowMs));
        } else {
          settle();
          apply(queue.expire(nowMs));
        }
      }
      // Drain: everything in flight finishes; whatever still waits starts or runs out of time.
      while (inFlight > 0) {
        inFlight -= 1;
        settle();
        apply(queue.finish(nowMs));
      }
      nowMs += 10_000;
      settle();
      apply(queue.expire(nowMs));
      assert.equal(waiting.size, 0);
      assert.equal(answered.size, nextId - 1, 'every request answered exactly once');
    }),
    { numRuns: 3000 },
  );
});

/**
 * Drives a queue, one step per ms, with requests that each hold a connection `serviceMs`; with
 * `closedLoop` every request answered (started and finished, or shed) comes back at once.
 */
function simulate(options: { limits: AdmissionLimits; untilMs: number; serviceMs: number; arrivals: (nowMs: number) => Priority[]; closedLoop?: boolean; stalledUntilMs?: () => number }) {
  const queue = createAdmissionQueue(options.limits);
  const running: Array<{ atMs: number; priority: Priority }> = [];
  const again: Priority[] = [];
  const since = new Map<number, { priority: Priority; sinceMs: number }>();
  const shed: Array<{ priority: Priority; reason: string; atMs: number }> = [];
  const admittedWaitMs: Record<Priority, number[]> = { send: [], read: [], typing: [] };
  const standingAt: Record<Priority, number[]> = { send: [], read: [], typing: [] };
  let id = 0;
  const take = (decision: Decision, nowMs: number): void => {
    for (const s of decision.shed) {
      shed.push({ priority: s.priority, reason: s.reason, atMs: nowMs });
      if (options.closedLoop) again.push(s.priority);
    }
    for (const a of decision.admitted) {
      const entry = since.get(a)!;
      admittedWaitMs[entry.priority].push(nowMs - entry.sinceMs);
      running.push({ atMs: nowMs + options.serviceMs, priority: entry.priority });
    }
  };
  for (let nowMs = 0; nowMs < options.untilMs; nowMs += 1) {
    running.sort((a, b) => a.atMs - b.atMs);
    // While stalled nothing finishes: the node is stuck (a lock, an I/O pause).
    const stalledUntil = options.stalledUntilMs?.() ?? 0;
    while (running.length > 0 && running[0]!.atMs <= nowMs && stalledUntil <= nowMs) {
      const done = running.shift()!;
      if (options.closedLoop) again.push(done.priority);
      take(queue.finish(nowMs), nowMs);
    }
    for (const priority of [...options.arrivals(nowMs), ...again.splice(0)]) {
      since.set(++id, { priority, sinceMs: nowMs });
      take(queue.arrive(id, priority, nowMs), nowMs);
    }
    take(queue.expire(nowMs), nowMs);
    for (const p of priorities) if (queue.standing(p, nowMs)) standingAt[p].push(nowMs);
  }
  return { shed, admittedWaitMs, standingAt, queue };
}

const production = (connections: number): AdmissionLimits => ({
  inFlightMax: connections,
  waitingMax: connections * 50,
  waitMaxMs: { send: 3000, read: 1000, typing: 250 },
  standing: { intervalMs: 100, waitMaxMs: { send: 20, read: 10, typing: 5 } },
});

test('a burst that drains, and a closed loop a little larger than the pool, never stand and shed nothing', () => {
  // Proves the short bounds are for overload only: 200 reads at once on 10 connections of 1 ms
  // drain in 20 ms; 32 senders in a closed loop on 10 connections wait about 2 ms each.
  const burst = simulate({ limits: production(10), untilMs: 500, serviceMs: 1, arrivals: (t) => (t === 0 ? Array(200).fill('read') : []) });
  assert.deepEqual(burst.shed, []);
  assert.deepEqual(burst.standingAt.read, []);
  const closed = simulate({ limits: production(10), untilMs: 2000, serviceMs: 1, closedLoop: true, arrivals: (t) => (t === 0 ? Array(32).fill('send') : []) });
  assert.deepEqual(closed.shed, []);
  assert.deepEqual(closed.standingAt.send, []);
  assert.ok(closed.admittedWaitMs.send.length > 19_000, 'the loop kept all ten connections busy');
});

test('a stall in which nothing is admitted keeps the long bounds: sends wait, then go at 3 s', () => {
  // Proves a frozen connection is not taken for overload (the breaker handles a frozen node).
  const stalled = simulate({ limits: production(1), untilMs: 3500, serviceMs: 10_000, arrivals: (t) => (t % 100 === 0 ? ['send'] : []) });
  assert.deepEqual(stalled.standingAt.send, []);
  assert.ok(stalled.shed.every((s) => s.reason === 'wait-timeout' && s.atMs >= 3000), 'no send shed before its long bound');
});

test('the backlog of a stall drains under the long bounds: its queue shrinks, so it does not stand', () => {
  // Proves the patient requests of a stall are served when it ends, though each waited long.
  let stalled = true;
  const run = simulate({
    limits: production(1),
    untilMs: 3000,
    serviceMs: 4,
    arrivals: (t) => {
      if (t === 1000) stalled = false;
      return t < 400 && t % 10 === 0 ? ['send'] : [];
    },
    stalledUntilMs: () => (stalled ? Number.POSITIVE_INFINITY : 0),
  });
  assert.equal(run.shed.length, 0, `shed: ${JSON.stringify(run.shed.slice(0, 3))}`);
  // 40 sends, the last 39 waiting up to a second; served one per 4 ms, the backlog takes 160 ms.
  assert.equal(run.admittedWaitMs.send.length, 40);
  assert.deepEqual(run.standingAt.send, []);
});

test('sustained overload: the queue stands within the interval, and accepted sends then wait at most 20 ms', () => {
  // Proves the short bound under overload: one send per ms offered to capacity for one per 1.25 ms.
  const run = simulate({ limits: production(4), untilMs: 3000, serviceMs: 5, arrivals: () => ['send'] });
  assert.ok(run.standingAt.send.length > 0 && run.standingAt.send[0]! < 400, `standing from ${run.standingAt.send[0]} ms`);
  const late = run.admittedWaitMs.send.slice(-1000);
  assert.ok(Math.max(...late) <= 20, `accepted sends waited up to ${Math.max(...late)} ms once standing`);
  assert.ok(run.shed.length > 0 && run.shed.every((s) => s.priority === 'send' && s.reason === 'wait-timeout'));
});

test('reads starved by sends stand and are shed at 10 ms, while the sends do not stand', () => {
  // Proves the per-class evidence: sends take every connection but are served at once; reads
  // passed over for the interval get their short bound, and typing is refused while reads stand.
  const run = simulate({ limits: production(2), untilMs: 2000, serviceMs: 2, arrivals: (t) => (t < 1000 ? ['send', ...(t % 10 === 0 ? ['read' as const] : [])] : []) });
  assert.deepEqual(run.standingAt.send, []);
  assert.ok(run.standingAt.read.length > 0);
  const readSheds = run.shed.filter((s) => s.priority === 'read');
  assert.ok(readSheds.length > 0 && readSheds.every((s) => s.reason === 'wait-timeout'));
  assert.equal(run.shed.filter((s) => s.priority === 'send').length, 0);
});

test('under sustained overload with sends below capacity, no send is shed, and typing goes before reads', () => {
  // Proves the share each class gets, for seeded random arrivals: 2 connections of 2 ms (1,000/s)
  // offered sends at 500/s, reads at 800/s and typing at 500/s.
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2_000_000 }), (seed) => {
      let state = seed;
      const random = (): number => {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        return state / 2 ** 32;
      };
      const offered: Record<Priority, number> = { send: 0, read: 0, typing: 0 };
      const run = simulate({
        limits: production(2),
        untilMs: 5000,
        serviceMs: 2,
        arrivals: () => {
          const now: Priority[] = [];
          if (random() < 0.5) now.push('send');
          if (random() < 0.8) now.push('read');
          if (random() < 0.5) now.push('typing');
          for (const p of now) offered[p] += 1;
          return now;
        },
      });
      const shed = (p: Priority): number => run.shed.filter((s) => s.priority === p).length;
      assert.equal(shed('send'), 0);
      assert.ok(shed('read') > 0);
      assert.ok(shed('typing') / offered.typing > shed('read') / offered.read, 'typing is shed in a larger share than reads');
      const waits = [...run.admittedWaitMs.send].sort((a, b) => a - b);
      assert.ok(waits[Math.floor(waits.length * 0.99)]! <= 10, 'sends hardly wait: they go first');
      return true;
    }),
    { numRuns: 10 },
  );
});
