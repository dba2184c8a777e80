// The imperative shell of admission control (the decisions are admission-core.ts's): one per pool,
// it holds each waiting request's promise, reads the monotonic clock, keeps one timer armed for the
// next wait bound, answers shed requests with ParleyError 'overloaded' (503, Retry-After) and counts
// what it admitted and shed per class for /metrics.
import { performance } from 'node:perf_hooks';
import { ParleyError } from '../errors/errors.ts';
import { createAdmissionQueue, priorities, retryAfterSecondsFor, shedReasons, type AdmissionLimits, type AdmissionSnapshot, type Decision, type Priority, type Shed, type ShedReason } from './admission-core.ts';
import { noteFailure } from './failures.ts';

/** Requests admitted and shed since the app server started, per class (and reason); only grow. */
export interface AdmissionCounters {
  admitted: Record<Priority, number>;
  shed: Record<Priority, Record<ShedReason, number>>;
}

/** What /metrics shows of admission: the counters plus what runs and waits now. */
export interface AdmissionStats extends AdmissionSnapshot, AdmissionCounters {}

/** Fresh counters; the routed database shares one set between its pools so totals survive a failover. */
export function createAdmissionCounters(): AdmissionCounters {
  const perReason = (): Record<ShedReason, number> => Object.fromEntries(shedReasons.map((r) => [r, 0])) as Record<ShedReason, number>;
  return { admitted: { send: 0, read: 0, typing: 0 }, shed: { send: perReason(), read: perReason(), typing: perReason() } };
}

/** The admission of one pool. */
export interface Admission {
  /** Waits for a connection slot; resolves to the function that gives it back; rejects 'overloaded' when shed. */
  acquire(priority: Priority): Promise<() => void>;
  /** Throws 'overloaded' (counted as shed) while the queue stands with requests of `priority` or a higher class waiting. */
  shedIfOverloaded(priority: Priority): void;
  snapshot(): AdmissionSnapshot;
  /** Fails everything waiting with `error()` (not a shed: the caller retries elsewhere) and what comes later. */
  close(error: () => Error): void;
}

/**
 * The limits of a pool of `poolSize` connections. Waiting, in ordinary times: a send as long as any
 * request may wait for a connection (data.connectTimeoutMs), a read up to a second (still useful
 * then), a typing indicator a quarter of a second (not useful later). Once a class's queue stands
 * (its requests kept waiting half their short bound for 100 ms while it did not shrink: overload,
 * not a burst or a stall's backlog), a send may wait 20 ms, a read 10 ms and a typing indicator
 * 5 ms: the share that must be shed is the same, and the sends that are accepted stay fast.
 *
 * That holds because sends to one conversation take turns before they reach this queue
 * (chat/turns.ts): a burst to a hot conversation, which the conversation's lock stores one at a
 * time, waits for its turns there and holds two connections, not all of them. Before the turns such
 * a burst filled this queue with sends that stood while the lock drained them, and the 20 ms bound
 * shed sends that would have been stored in time (test/blackbox: 21 of 60 in CI).
 */
export function admissionLimitsFor(options: { poolSize: number; connectTimeoutMs: number; waitingMax?: number | undefined }): AdmissionLimits {
  const { poolSize, connectTimeoutMs } = options;
  return {
    inFlightMax: poolSize,
    waitingMax: options.waitingMax ?? poolSize * 50,
    waitMaxMs: { send: connectTimeoutMs, read: Math.min(connectTimeoutMs, 1000), typing: Math.min(connectTimeoutMs, 250) },
    standing: { intervalMs: 100, waitMaxMs: { send: 20, read: 10, typing: 5 } },
  };
}

const classNames: Record<Priority, string> = { send: 'write', read: 'read', typing: 'typing indicator' };

function shedError(shed: Shed, limits: AdmissionLimits): ParleyError {
  const why: Record<ShedReason, string> = {
    'queue-full': `${limits.waitingMax} requests were already waiting for the database`,
    'wait-timeout': `no database connection came free in time`,
    stalled: 'a more important request waited its full time before it, so nothing behind it could start',
    'standing-queue': 'requests have been waiting for the database for a while',
  };
  const seconds = retryAfterSecondsFor(shed.priority);
  const first = shed.priority === 'send' ? '' : '; sends go first';
  const error = new ParleyError('overloaded', `The server is overloaded and shed this ${classNames[shed.priority]} (${why[shed.reason]})${first}; retry in ${seconds} s`, {
    retryAfterSeconds: seconds,
  });
  return noteFailure(error, { cause: 'shed' });
}

/** Creates the admission of one pool of `limits.inFlightMax` connections. */
export function createAdmission(limits: AdmissionLimits, counters: AdmissionCounters): Admission {
  const queue = createAdmissionQueue(limits);
  const waiters = new Map<number, { resolve: (release: () => void) => void; reject: (error: Error) => void }>();
  let nextId = 1;
  let timer: NodeJS.Timeout | undefined;
  let timerAtMs: number | undefined;
  let closedWith: (() => Error) | undefined;

  function releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      apply(queue.finish(performance.now()));
    };
  }

  function apply(decision: Decision): void {
    for (const shed of decision.shed) {
      const waiter = waiters.get(shed.id);
      waiters.delete(shed.id);
      counters.shed[shed.priority][shed.reason] += 1;
      waiter?.reject(shedError(shed, limits));
    }
    for (const id of decision.admitted) {
      const waiter = waiters.get(id);
      waiters.delete(id);
      waiter?.resolve(releaser());
    }
    arm();
  }

  /** One timer, at the next wait bound; a timer already due earlier is kept (it re-arms when it fires). */
  function arm(): void {
    const next = queue.nextDeadlineMs();
    if (next === undefined) {
      clearTimeout(timer);
      timer = undefined;
      timerAtMs = undefined;
      return;
    }
    if (timerAtMs !== undefined && timerAtMs <= next) return;
    clearTimeout(timer);
    timerAtMs = next;
    timer = setTimeout(() => {
      timer = undefined;
      timerAtMs = undefined;
      apply(queue.expire(performance.now()));
    }, Math.max(0, Math.ceil(next - performance.now())));
    // Not unref'd: it exists only while requests wait, and those are work the process still owes.
  }

  return {
    acquire(priority) {
      if (closedWith) return Promise.reject(closedWith());
      const id = nextId++;
      return new Promise<() => void>((resolve, reject) => {
        waiters.set(id, {
          resolve: (release) => {
            counters.admitted[priority] += 1;
            resolve(release);
          },
          reject,
        });
        apply(queue.arrive(id, priority, performance.now()));
      });
    },
    shedIfOverloaded(priority) {
      if (!queue.overloaded(priority, performance.now())) return;
      counters.shed[priority]['standing-queue'] += 1;
      throw shedError({ id: 0, priority, reason: 'standing-queue' }, limits);
    },
    snapshot: () => queue.snapshot(),
    close(error) {
      closedWith = error;
      for (const id of queue.evictAll()) {
        const waiter = waiters.get(id);
        waiters.delete(id);
        waiter?.reject(error());
      }
      arm();
    },
  };
}

/** Adds up the snapshots of several pools (the routed database's nodes) over shared counters. */
export function sumAdmission(snapshots: readonly AdmissionSnapshot[], counters: AdmissionCounters): AdmissionStats {
  const waiting: Record<Priority, number> = { send: 0, read: 0, typing: 0 };
  let inFlight = 0;
  for (const s of snapshots) {
    inFlight += s.inFlight;
    for (const p of priorities) waiting[p] += s.waiting[p];
  }
  return { inFlight, waiting, admitted: { ...counters.admitted }, shed: { send: { ...counters.shed.send }, read: { ...counters.shed.read }, typing: { ...counters.shed.typing } } };
}
