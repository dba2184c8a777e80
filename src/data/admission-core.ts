// Admission control by priority, the pure core (DESIGN.md invariant 9: overload degrades, never
// collapses). One queue guards one pool: at most `inFlightMax` requests hold a connection, the
// rest wait in one FIFO per class, bounded in length (`waitingMax`, all classes together) and in
// time (`waitMaxMs`, per class). Sends go first, then reads, then typing; when something must go,
// the lowest class goes first, so a send is never shed while a request of a lower class waits.
//
// A queue that stays long is overload, not a burst, and waiting in it only adds latency: the share
// that must be shed is the same however long the queue, so a long one makes every accepted request
// slow as well, and a server holding thousands of waiting requests slower still (measured:
// docs/benchmarks.md, overload). So, as CoDel does for packets (Nichols and Jacobson; Facebook's
// server queues after it), a class whose requests have kept waiting for `intervalMs` while its queue
// did not shrink is *standing* and may then wait only its short `standing.waitMaxMs`. The evidence is
// taken when a connection is handed out: a request of the class admitted after waiting at least its
// target (half its short bound), or passed over while the oldest of the class had waited that long,
// starts the interval; one admitted sooner, or the class's queue empty, ends it (and the standing).
// A burst, or the backlog of a stall, drains (its queue shrinks) under the long bounds; so does a
// closed loop of clients a little larger than the pool (its requests wait less than the target);
// a stall itself admits nothing, so it gives no evidence (a breaker deals with a frozen node).
//
// No clock and no I/O: the shell (admission.ts) passes `nowMs` in and carries the decisions out,
// so property tests can drive millions of steps.

/** The classes, highest priority first. */
export const priorities = ['send', 'read', 'typing'] as const;

/**
 * What a request is for: `send` — message sends and every other write (and the session lookup of a
 * write); `read` — history, conversation list, sync, session lookups; `typing` — typing indicators
 * and other presence signals, worthless a moment later.
 */
export type Priority = (typeof priorities)[number];

/** Why a request was shed (answered 'overloaded' without running). */
export type ShedReason =
  /** The queue was full: this arrival, or the oldest waiting request of a class no higher than it. */
  | 'queue-full'
  /** It waited its class's bound (the short one while the class stands) without getting a connection. */
  | 'wait-timeout'
  /** A request of a higher class waited its full bound: nothing behind it would have started. */
  | 'stalled'
  /** Work that needs no connection (typing with its members cached) refused while the queue stands. */
  | 'standing-queue';

/** Every shed reason, for counters and metrics. */
export const shedReasons: readonly ShedReason[] = ['queue-full', 'wait-timeout', 'stalled', 'standing-queue'];

/** The limits of one queue. */
export interface AdmissionLimits {
  /** Requests running at once: the pool's connections. */
  inFlightMax: number;
  /** Requests waiting, all classes together. */
  waitingMax: number;
  /** How long a request of each class may wait for a connection before it is shed. */
  waitMaxMs: Record<Priority, number>;
  /** When a class's queue counts as standing, and how long its requests may wait then. */
  standing: {
    /** How long the class must have kept waiting (see the top of this file). */
    intervalMs: number;
    /** The wait bounds while it stands (`waitMaxMs` still applies if shorter); the target is half. */
    waitMaxMs: Record<Priority, number>;
  };
}

/** One request the core let go: shed, with the reason. */
export interface Shed {
  id: number;
  priority: Priority;
  reason: ShedReason;
}

/** What to do now: start these waiting requests (in this order), answer those 'overloaded'. */
export interface Decision {
  admitted: number[];
  /** In the order decided; whenever one is shed, no request of a lower class is left waiting. */
  shed: Shed[];
}

/** Counts of one queue at one moment. */
export interface AdmissionSnapshot {
  inFlight: number;
  waiting: Record<Priority, number>;
}

/** The queue of one pool. `arrive`, `finish`, `expire` and `evictAll` decide; the others only look. */
export interface AdmissionQueue {
  /** Request `id` of `priority` wants a connection. */
  arrive(id: number, priority: Priority, nowMs: number): Decision;
  /** A request that was admitted gave its connection back. */
  finish(nowMs: number): Decision;
  /** Sheds what has waited too long (the shell calls it at `nextDeadlineMs`). */
  expire(nowMs: number): Decision;
  /** Removes everything waiting, lowest class first, and returns the ids (the pool closes: not a shed). */
  evictAll(): number[];
  /** Whether `priority`'s queue stands at `nowMs` (see the top of this file). */
  standing(priority: Priority, nowMs: number): boolean;
  /** True while the queue of `priority` or of a higher class stands: work of that class is not welcome. */
  overloaded(priority: Priority, nowMs: number): boolean;
  /** When the first waiting request will be past its bound if nothing else happens; undefined when none waits. */
  nextDeadlineMs(): number | undefined;
  snapshot(): AdmissionSnapshot;
}

/** 0 for `send`, the highest; larger is lower. */
export function rankOf(priority: Priority): number {
  return priorities.indexOf(priority);
}

/** The lower of two priorities (a read made on behalf of typing stays typing). */
export function lowerOf(a: Priority, b: Priority): Priority {
  return rankOf(a) >= rankOf(b) ? a : b;
}

/** Retry-After for a shed request: lower classes are asked to stay away longer. */
export function retryAfterSecondsFor(priority: Priority): number {
  return priority === 'send' ? 1 : priority === 'read' ? 2 : 5;
}

interface Waiting {
  id: number;
  sinceMs: number;
}

/** A FIFO with O(1) push and shift (an array and a head index, compacted as it drains). */
class Fifo {
  private items: Waiting[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: Waiting): void {
    this.items.push(item);
  }

  peek(): Waiting | undefined {
    return this.items[this.head];
  }

  shift(): Waiting {
    const item = this.items[this.head];
    if (item === undefined) throw new Error('admission: shift from an empty class queue');
    this.head += 1;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

function checkLimits(limits: AdmissionLimits): void {
  const whole = (n: number, min: number): boolean => Number.isInteger(n) && n >= min;
  if (!whole(limits.inFlightMax, 1)) throw new Error(`admission: inFlightMax must be a whole number ≥ 1, got ${limits.inFlightMax}`);
  if (!whole(limits.waitingMax, 0)) throw new Error(`admission: waitingMax must be a whole number ≥ 0, got ${limits.waitingMax}`);
  const positive = (name: string, ms: number): void => {
    // Nobody waiting at all is waitingMax 0; a bound of 0 would queue a request already overdue.
    if (!(ms > 0) || !Number.isFinite(ms)) throw new Error(`admission: ${name} must be a finite number > 0, got ${ms}`);
  };
  for (const priority of priorities) {
    positive(`waitMaxMs.${priority}`, limits.waitMaxMs[priority]);
    positive(`standing.waitMaxMs.${priority}`, limits.standing.waitMaxMs[priority]);
  }
  positive('standing.intervalMs', limits.standing.intervalMs);
}

/** Creates the queue of one pool with nothing in flight and nothing waiting. */
export function createAdmissionQueue(limits: AdmissionLimits): AdmissionQueue {
  checkLimits(limits);
  const queues: Record<Priority, Fifo> = { send: new Fifo(), read: new Fifo(), typing: new Fifo() };
  let inFlight = 0;
  let waitingTotal = 0;
  // Per class: since when its requests have kept waiting (undefined: they have not), how many waited
  // then, and whether it stands (see the top of this file).
  const aboveSinceMs: Record<Priority, number | undefined> = { send: undefined, read: undefined, typing: undefined };
  const sizeThen: Record<Priority, number> = { send: 0, read: 0, typing: 0 };
  const stands: Record<Priority, boolean> = { send: false, read: false, typing: false };

  /** Whether `priority` will stand once its interval is over, if nothing else happens. */
  const willStand = (priority: Priority): boolean => aboveSinceMs[priority] !== undefined && queues[priority].size >= sizeThen[priority];
  const standingAt = (priority: Priority, nowMs: number): boolean =>
    stands[priority] || (willStand(priority) && nowMs - aboveSinceMs[priority]! >= limits.standing.intervalMs);
  /** Before deciding at `nowMs`: a class whose interval ended while its queue had not shrunk stands. */
  function settle(nowMs: number): void {
    for (const priority of priorities) stands[priority] = standingAt(priority, nowMs);
  }
  function observe(priority: Priority, nowMs: number): void {
    if (aboveSinceMs[priority] !== undefined) return;
    aboveSinceMs[priority] = nowMs;
    sizeThen[priority] = queues[priority].size;
  }
  function forget(priority: Priority): void {
    aboveSinceMs[priority] = undefined;
    stands[priority] = false;
  }
  const shortMs = (priority: Priority): number => Math.min(limits.waitMaxMs[priority], limits.standing.waitMaxMs[priority]);
  const targetMs = (priority: Priority): number => limits.standing.waitMaxMs[priority] / 2;

  /**
   * When `item` is past its bound if nothing else happens: its long bound, or its short one from the
   * moment its class will stand (an operation may end that; the shell asks again after each).
   */
  function deadlineOf(priority: Priority, item: Waiting): number {
    const long = item.sinceMs + limits.waitMaxMs[priority];
    if (stands[priority]) return Math.min(long, item.sinceMs + shortMs(priority));
    if (!willStand(priority)) return long;
    return Math.min(long, Math.max(item.sinceMs + shortMs(priority), aboveSinceMs[priority]! + limits.standing.intervalMs));
  }

  function take(priority: Priority): Waiting {
    waitingTotal -= 1;
    return queues[priority].shift();
  }

  /** The lowest class with a request waiting. */
  function lowestWaiting(): Priority | undefined {
    for (let rank = priorities.length - 1; rank >= 0; rank -= 1) {
      const priority = priorities[rank]!;
      if (queues[priority].size > 0) return priority;
    }
    return undefined;
  }

  /** Sheds, lowest class first, what waited past its bound, and everything below the highest such class. */
  function expireInto(decision: Decision, nowMs: number): void {
    let stalledBelow: number | undefined;
    for (const priority of priorities) {
      const head = queues[priority].peek();
      if (head !== undefined && deadlineOf(priority, head) <= nowMs) {
        stalledBelow = rankOf(priority);
        break;
      }
    }
    if (stalledBelow === undefined) return;
    for (let rank = priorities.length - 1; rank >= stalledBelow; rank -= 1) {
      const priority = priorities[rank]!;
      const queue = queues[priority];
      while (queue.size > 0) {
        const expired = deadlineOf(priority, queue.peek()!) <= nowMs;
        // The class that stalled keeps its requests that still have time: one may yet start.
        if (!expired && rank === stalledBelow) break;
        decision.shed.push({ id: take(priority).id, priority, reason: expired ? 'wait-timeout' : 'stalled' });
      }
    }
  }

  /** Starts waiting requests, highest class first, oldest first, while connections are free. */
  function admitInto(decision: Decision, nowMs: number): void {
    while (inFlight < limits.inFlightMax && waitingTotal > 0) {
      const priority = priorities.find((p) => queues[p].size > 0)!;
      const item = take(priority);
      decision.admitted.push(item.id);
      inFlight += 1;
      // The evidence: this class waited long or not; the others, passed over, did if their oldest did.
      for (const other of priorities) {
        if (other === priority) {
          if (nowMs - item.sinceMs < targetMs(priority)) forget(priority);
          else observe(priority, nowMs);
        } else {
          const head = queues[other].peek();
          if (head !== undefined && nowMs - head.sinceMs >= targetMs(other)) observe(other, nowMs);
        }
      }
    }
  }

  function checked(decision: Decision): Decision {
    for (const priority of priorities) if (queues[priority].size === 0) forget(priority);
    // The invariants every decision leaves behind (TigerBeetle-style assertions in the core).
    if (inFlight < 0 || inFlight > limits.inFlightMax) throw new Error(`admission: ${inFlight} in flight, limit ${limits.inFlightMax}`);
    if (waitingTotal < 0 || waitingTotal > limits.waitingMax) throw new Error(`admission: ${waitingTotal} waiting, limit ${limits.waitingMax}`);
    if (waitingTotal > 0 && inFlight < limits.inFlightMax) throw new Error('admission: a request waits while a connection is free');
    return decision;
  }

  return {
    arrive(id, priority, nowMs) {
      const decision: Decision = { admitted: [], shed: [] };
      settle(nowMs);
      expireInto(decision, nowMs);
      if (inFlight < limits.inFlightMax) {
        // Nothing waits when a connection is free, so nobody is overtaken (and nothing stands).
        inFlight += 1;
        decision.admitted.push(id);
        return checked(decision);
      }
      if (waitingTotal >= limits.waitingMax) {
        const lowest = lowestWaiting();
        if (lowest === undefined || rankOf(lowest) < rankOf(priority)) {
          // Everyone waiting outranks the arrival (or nobody may wait at all): it goes.
          decision.shed.push({ id, priority, reason: 'queue-full' });
          return checked(decision);
        }
        // Room is made at the bottom: the oldest of the lowest class has waited longest, is
        // nearest its own bound and its client likeliest to have given up.
        decision.shed.push({ id: take(lowest).id, priority: lowest, reason: 'queue-full' });
      }
      queues[priority].push({ id, sinceMs: nowMs });
      waitingTotal += 1;
      return checked(decision);
    },

    finish(nowMs) {
      if (inFlight <= 0) throw new Error('admission: finish() without a request in flight');
      inFlight -= 1;
      const decision: Decision = { admitted: [], shed: [] };
      settle(nowMs);
      expireInto(decision, nowMs);
      admitInto(decision, nowMs);
      return checked(decision);
    },

    expire(nowMs) {
      const decision: Decision = { admitted: [], shed: [] };
      settle(nowMs);
      expireInto(decision, nowMs);
      return checked(decision);
    },

    evictAll() {
      const evicted: number[] = [];
      for (let rank = priorities.length - 1; rank >= 0; rank -= 1) {
        const priority = priorities[rank]!;
        while (queues[priority].size > 0) evicted.push(take(priority).id);
      }
      for (const priority of priorities) forget(priority);
      return evicted;
    },

    standing: standingAt,

    overloaded(priority, nowMs) {
      for (let rank = 0; rank <= rankOf(priority); rank += 1) if (standingAt(priorities[rank]!, nowMs)) return true;
      return false;
    },

    nextDeadlineMs() {
      let next: number | undefined;
      for (const priority of priorities) {
        const head = queues[priority].peek();
        if (head !== undefined) next = Math.min(next ?? Number.POSITIVE_INFINITY, deadlineOf(priority, head));
      }
      return next;
    },

    snapshot() {
      return { inFlight, waiting: { send: queues.send.size, read: queues.read.size, typing: queues.typing.size } };
    },
  };
}
