// The app's view of a replicated cluster: one pool per node; writes go to the node the lease names
// as primary, reads to a healthy standby that has replayed the reader's own writes (else to the
// primary). The topology comes from outside (the app-server process reads the lease store and the
// agents' published states), so data/ knows nothing of leases: it is told who is primary, which
// standbys the agents call streaming, and whether a failover may be under way. What it checks
// itself, every `probeIntervalMs`: each node answers within `probeTimeoutMs`, the primary's WAL
// position, and each standby's replay position — the facts read routing and breakers need at
// sub-second freshness. Hand-written: this routing is the product (DESIGN.md, invariant 9).
import type pg from 'pg';
import { ParleyError } from '../errors/errors.ts';
import { createDatabase, isConnectionLost, markNotReached, markOutcomeUnknown, neverReachedServer, type Database, type DatabaseHealth, type DatabaseOptions, type Queryable } from './database.ts';
import { lowerOf, priorities, type Priority } from './admission-core.ts';
import { createAdmissionCounters, sumAdmission } from './admission.ts';
import { createBreaker, type Breaker } from './breaker.ts';
import { noteFailure } from './failures.ts';
import { listen } from './listen.ts';

/**
 * Whether a statement whose connection was lost mid-way may simply run again on the new primary:
 * Parley's SELECT statements only read — except `parley.send_message`, which writes; it is
 * idempotent, but chat/ resends it itself so that it can announce the message live.
 */
function rerunnable(text: string): boolean {
  return /^\s*SELECT\b/i.test(text) && !/\bsend_message\s*\(/i.test(text);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One node the app may connect to. */
export interface NodeUrl {
  name: string;
  url: string;
}

/** What the lease store says, as the app server read it. */
export interface Topology {
  /** The lease holder while its term runs; undefined when nobody holds it. */
  primary: string | undefined;
  /**
   * Maintenance of the whole cluster is on: no failover will come, so a write is never held for
   * one — a primary that cannot serve is answered 503 with Retry-After at once.
   */
  maintenance: boolean;
  /** Standbys whose agents publish them running and streaming from the primary. */
  streaming: string[];
}

/** A Database that follows the cluster. */
export interface RoutedDatabase extends Database {
  setTopology(topology: Topology): void;
  /** Shorthand for tests: `name` is primary, no standbys, no maintenance. */
  setPrimary(name: string | undefined): void;
  primary(): string | undefined;
  /** The standbys reads may go to now. */
  readPool(): string[];
}

/** Limits of the routed database on top of each pool's. */
export interface RoutedOptions extends Omit<DatabaseOptions, 'url'> {
  /** How long a write waits for a primary when the current one cannot serve (data.failoverWaitMs). */
  failoverWaitMs?: number;
  /** A standby further behind the primary than this leaves the read pool (data.readMaxLagBytes). */
  readMaxLagBytes?: number;
  /** ... or that has not replayed what the primary had this long ago (data.readMaxLagMs). */
  readMaxLagMs?: number;
  /** How often every node is probed; 0 turns probing (and so standby reads) off. */
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  /** How long a node's breaker stays open before one request may try it again. */
  breakerCooldownMs?: number;
}

// How often a query waiting for a primary looks again.
const waitStepMs = 50;
// How long a reader's own write keeps its reads off standbys that have not replayed it.
const ownWritesKeptMs = 60_000;
const ownWritesMax = 100_000;
// Primary WAL positions kept, one per probe.
const positionsKept = 64;

interface NodeState {
  readonly name: string;
  readonly url: string;
  pool: Database | undefined;
  /** One connection of its own for the health probe, so a hung node cannot starve the app's pool. */
  probePool: Database | undefined;
  readonly breaker: Breaker;
  /** Replay position as last probed (standbys), or WAL position (primary); null: unknown. */
  lsn: bigint | null;
  probedAtMs: number;
}

/** "16/B374D848" → bytes. */
function lsnOf(text: string | null | undefined): bigint | null {
  if (!text) return null;
  const [high, low] = text.split('/');
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

/**
 * Creates pools lazily, one per node. Writes go to the primary; while there is none, or it cannot
 * be reached and a failover is likely, a write waits up to `failoverWaitMs` for one — clients see a
 * pause, not an error — then fails with 503. A primary that is there but does not answer (frozen,
 * overloaded, maintenance) opens its breaker: writes are answered 503 at once, and requests under
 * way on it are answered 503 then, not at their timeout. Only failures before a statement could
 * take effect are retried elsewhere (neverReachedServer).
 */
export function createRoutedDatabase(nodes: readonly NodeUrl[], options: RoutedOptions): RoutedDatabase {
  const failoverWaitMs = options.failoverWaitMs ?? 0;
  const readMaxLagBytes = BigInt(options.readMaxLagBytes ?? 16 * 1024 * 1024);
  const readMaxLagMs = options.readMaxLagMs ?? 1000;
  const probeIntervalMs = options.probeIntervalMs ?? 0;
  const probeTimeoutMs = options.probeTimeoutMs ?? 500;
  const states = new Map<string, NodeState>(
    nodes.map((node) => [node.name, { name: node.name, url: node.url, pool: undefined, probePool: undefined, breaker: createBreaker({ cooldownMs: options.breakerCooldownMs ?? 1000 }), lsn: null, probedAtMs: 0 }]),
  );
  let topology: Topology = { primary: undefined, maintenance: false, streaming: [] };
  let readers: string[] = [];
  // The primary's WAL position at the start of each probe: a write acknowledged before `atMs` is below `lsn`.
  const positions: Array<{ atMs: number; lsn: bigint }> = [];
  // When each reader (an account) last wrote.
  const ownWrites = new Map<string, number>();
  let probing: NodeJS.Timeout | undefined;
  let closed = false;
  // Admission is per pool (each node's connections are its own to hand out, so a send on the
  // primary is never shed for a read waiting on a standby); the counts are the app server's.
  const admissionCounters = createAdmissionCounters();

  function poolOf(state: NodeState): Database {
    state.pool ??= createDatabase({ ...options, url: state.url, applicationName: `${options.applicationName ?? 'parley'}-${state.name}`, admissionCounters });
    return state.pool;
  }

  function unavailable(detail: string, cause: string, node: string | undefined, retryAfterSeconds = 2): ParleyError {
    return noteFailure(new ParleyError('storage_unavailable', detail, { retryAfterSeconds }), { cause, node: node ?? 'none' });
  }

  function primaryState(): NodeState {
    const name = topology.primary;
    if (name === undefined) throw unavailable('No primary database right now (a failover may be under way); retry shortly', 'no-primary', undefined);
    const state = states.get(name);
    if (!state) throw unavailable(`The lease names "${name}", which is not a known node`, 'no-primary', name);
    return state;
  }

  /**
   * Runs `run` on `state`'s pool, admitted as `priority`, through its breaker: refused at once while
   * open, answered 503 when it opens. A request the pool sheds ('overloaded') is not the node's
   * fault: it leaves the breaker alone and is not retried elsewhere (that would move the load).
   */
  async function through<T>(state: NodeState, role: 'primary' | 'read', priority: Priority, run: (db: Database) => Promise<T>): Promise<T> {
    if (!state.breaker.allows(Date.now())) {
      // Refused before anything ran: as safe to send elsewhere as a refused connection.
      throw markNotReached(unavailable(`The database ${state.name} is not answering; retry shortly`, 'breaker-open', state.name, 1));
    }
    const opened = state.breaker.whenOpened();
    try {
      const result = await Promise.race([
        run(poolOf(state).withPriority(priority)),
        opened.promise.then(() => {
          // The statement may still run on the node: its outcome is unknown, as with a lost connection.
          throw markOutcomeUnknown(unavailable(`The database ${state.name} stopped answering while this request ran; it is not acknowledged, retry shortly`, 'breaker-open', state.name, 1));
        }),
      ]);
      state.breaker.succeeded();
      return result;
    } catch (error) {
      // The node's trouble, not the request's: timeouts and lost or refused connections. A node
      // that refuses writes as a standby is waited out instead (a switchover), and a commit whose
      // standby wait was cancelled says nothing about the primary itself.
      if (isUnavailable(error) && !neverReachedServer(error) && !/standby in time/.test((error as Error).message)) state.breaker.failed(Date.now());
      throw noteFailure(error, { node: state.name, pool: role });
    } finally {
      opened.cancel();
    }
  }

  /**
   * Runs on the primary. When it cannot serve — none named, connection refused, not a primary any
   * more, its breaker open, or (for statements safe to repeat) the connection lost mid-way — the
   * request waits up to `failoverWaitMs` for the lease to name one that can, unless maintenance holds
   * failover back, in which case nobody is coming and the answer is 503 at once.
   */
  async function onPrimary<T>(priority: Priority, run: (db: Database) => Promise<T>, rerunIfLost = false): Promise<T> {
    const deadline = Date.now() + failoverWaitMs;
    for (;;) {
      const tried = topology.primary;
      try {
        return await through(primaryState(), 'primary', priority, run);
      } catch (error) {
        const waitable = topology.primary === undefined || neverReachedServer(error) || (rerunIfLost && isConnectionLost(error));
        if (!waitable || (topology.maintenance && topology.primary !== undefined) || Date.now() + waitStepMs > deadline) throw error;
      }
      // Wait for the lease to name a primary (or another one), or for this one to answer again.
      const until = Math.min(deadline, Date.now() + 1000);
      while (topology.primary === tried && tried === undefined && Date.now() < until) await sleep(waitStepMs);
      if (topology.primary === tried) await sleep(waitStepMs);
    }
  }

  /** The standby a reader may read from: in the pool and past the reader's own last write. */
  function readerFor(key: string | undefined): NodeState | undefined {
    if (readers.length === 0) return undefined;
    let needed: bigint | null = 0n;
    if (key !== undefined) {
      const wroteAt = ownWrites.get(key);
      if (wroteAt !== undefined) {
        if (Date.now() - wroteAt > ownWritesKeptMs) ownWrites.delete(key);
        else needed = positionAfter(wroteAt);
      }
    }
    if (needed === null) return undefined;
    const now = Date.now();
    const eligible = readers.map((name) => states.get(name)!).filter((s) => s.lsn !== null && s.lsn >= needed! && !s.breaker.isOpen(now));
    if (eligible.length === 0) return undefined;
    // Spread readers over the standbys, the same reader on the same standby (its reads stay monotonic).
    return eligible[key === undefined ? Math.floor(Math.random() * eligible.length) : hash(key) % eligible.length];
  }

  /**
   * How long ago the primary had WAL that `replayed` still lacks: the age of the oldest probe of the
   * primary ahead of it; 0 when it has everything probed (an idle primary never shows lag).
   */
  function lagMs(replayed: bigint, now: number): number {
    for (const p of positions) if (p.lsn > replayed) return now - p.atMs;
    return 0;
  }

  /** The primary's position probed after `atMs`, or null when no probe has run since. */
  function positionAfter(atMs: number): bigint | null {
    for (const p of positions) if (p.atMs >= atMs) return p.lsn;
    return null;
  }

  async function onReader<T>(key: string | undefined, priority: Priority, run: (db: Database) => Promise<T>): Promise<T> {
    const standby = readerFor(key);
    if (standby !== undefined) {
      try {
        return await through(standby, 'read', priority, run);
      } catch (error) {
        // A read is safe to run again: on the primary, unless the standby refused on its merits.
        if (!isUnavailable(error)) throw error;
      }
    }
    return onPrimary(priority, run, true);
  }

  async function probe(state: NodeState, asPrimary: boolean): Promise<void> {
    const startedAtMs = Date.now();
    try {
      state.probePool ??= createDatabase({ url: state.url, poolSize: 1, queryTimeoutMs: probeTimeoutMs, connectTimeoutMs: probeTimeoutMs, applicationName: `${options.applicationName ?? 'parley'}-probe` });
      const db = state.probePool;
      const answer = await withTimeout(
        db.query<{ lsn: string | null; recovery: boolean }>(
          asPrimary ? 'SELECT pg_current_wal_lsn()::text AS lsn, pg_is_in_recovery() AS recovery' : 'SELECT pg_last_wal_replay_lsn()::text AS lsn, pg_is_in_recovery() AS recovery',
        ),
        probeTimeoutMs,
      );
      const row = answer.rows[0];
      state.lsn = lsnOf(row?.lsn);
      state.probedAtMs = Date.now();
      if (asPrimary && row && !row.recovery && state.lsn !== null) {
        positions.push({ atMs: startedAtMs, lsn: state.lsn });
        if (positions.length > positionsKept) positions.shift();
      }
      if (asPrimary && row?.recovery) {
        // Not (or no longer) a primary: the lease will name another soon.
        state.lsn = null;
        return;
      }
      state.breaker.succeeded();
    } catch {
      state.lsn = null;
      state.breaker.trip(Date.now());
    }
  }

  async function probeAll(): Promise<void> {
    const primary = topology.primary === undefined ? undefined : states.get(topology.primary);
    const standbys = topology.streaming.filter((name) => name !== topology.primary).map((name) => states.get(name)).filter((s): s is NodeState => s !== undefined);
    await Promise.all([primary ? probe(primary, true) : Promise.resolve(), ...standbys.map((s) => probe(s, false))]);
    const head = primary?.lsn ?? null;
    const now = Date.now();
    readers = standbys
      .filter((s) => s.lsn !== null && !s.breaker.isOpen(now) && (head === null || head - s.lsn! <= readMaxLagBytes) && lagMs(s.lsn!, now) <= readMaxLagMs)
      .map((s) => s.name);
  }

  function schedule(): void {
    if (closed || probeIntervalMs <= 0) return;
    probing = setTimeout(() => {
      void probeAll().finally(schedule);
    }, probeIntervalMs);
  }
  schedule();

  function retire(name: string | undefined): void {
    if (name === undefined) return;
    const state = states.get(name);
    const old = state?.pool;
    if (state) state.pool = undefined;
    void old?.close().catch(() => undefined);
  }

  const routed: RoutedDatabase = {
    setTopology(next) {
      const previous = topology.primary;
      topology = { ...next, streaming: [...next.streaming] };
      if (next.primary !== previous) {
        // Connections to a demoted primary are useless for writes; close them so none lingers.
        // Its WAL positions no longer say anything about the new primary's.
        retire(previous);
        positions.length = 0;
        if (next.primary !== undefined) states.get(next.primary)?.breaker.reset();
      }
      readers = readers.filter((name) => next.streaming.includes(name) && name !== next.primary);
    },
    setPrimary(name) {
      routed.setTopology({ primary: name, maintenance: false, streaming: [] });
    },
    primary: () => topology.primary,
    readPool: () => [...readers],
    query<R extends pg.QueryResultRow>(text: string, values?: unknown[], name?: string) {
      return onPrimary('send', (db) => db.query<R>(text, values, name), rerunnable(text));
    },
    transaction<T>(fn: (client: Queryable) => Promise<T>) {
      return onPrimary('send', (db) => db.transaction(fn));
    },
    reads(key?: string): Database {
      return key === undefined ? anyReaders.read : readerView(key, 'read');
    },
    withPriority(priority) {
      return primaryViews[priority];
    },
    shedIfOverloaded() {
      shedIfPrimaryOverloaded('send');
    },
    admissionStats() {
      return sumAdmission([...states.values()].flatMap((s) => (s.pool ? [s.pool.admissionStats()] : [])), admissionCounters);
    },
    wrote(key: string) {
      ownWrites.delete(key);
      ownWrites.set(key, Date.now());
      if (ownWrites.size > ownWritesMax) ownWrites.delete(ownWrites.keys().next().value!);
    },
    listen(channel, onNotification, onSubscribed) {
      return listen({
        channel,
        onNotification,
        onSubscribed,
        primaryUrl: () => (topology.primary === undefined ? undefined : states.get(topology.primary)?.url),
        connectTimeoutMs: options.connectTimeoutMs,
        applicationName: `${options.applicationName ?? 'parley'}-listen`,
      });
    },
    health(): DatabaseHealth {
      const now = Date.now();
      const primary = topology.primary === undefined ? undefined : states.get(topology.primary);
      if (primary === undefined) {
        return { state: readers.length > 0 ? 'degraded' : 'down', detail: `no primary (a failover may be under way); ${readers.length} standby(s) serve reads` };
      }
      if (primary.breaker.isOpen(now) || (probeIntervalMs > 0 && primary.probedAtMs > 0 && primary.lsn === null)) {
        return { state: readers.length > 0 ? 'degraded' : 'down', detail: `the primary ${primary.name} is not answering; ${readers.length} standby(s) serve reads; sends are refused with Retry-After` };
      }
      return { state: 'ok', detail: `primary ${primary.name}; read pool: ${readers.join(', ') || 'none'}` };
    },
    stats() {
      const pool = topology.primary === undefined ? undefined : states.get(topology.primary)?.pool;
      return pool ? pool.stats() : { total: 0, idle: 0, waiting: 0 };
    },
    async close() {
      closed = true;
      clearTimeout(probing);
      await Promise.all([...states.values()].flatMap((s) => [s.pool?.close().catch(() => undefined), s.probePool?.close().catch(() => undefined)]));
      for (const s of states.values()) {
        s.pool = undefined;
        s.probePool = undefined;
      }
    },
  };
  /** Work that needs no connection is judged by the primary's queue: that is where sends wait. */
  function shedIfPrimaryOverloaded(priority: Priority): void {
    const primary = topology.primary === undefined ? undefined : states.get(topology.primary);
    primary?.pool?.withPriority(priority).shedIfOverloaded();
  }
  /** The routed database on the primary, admitted as `priority`. */
  function primaryView(priority: Priority): Database {
    return {
      ...routed,
      query: <R extends pg.QueryResultRow>(text: string, values?: unknown[], name?: string) => onPrimary(priority, (db) => db.query<R>(text, values, name), rerunnable(text)),
      transaction: <T>(fn: (client: Queryable) => Promise<T>) => onPrimary(priority, (db) => db.transaction(fn)),
      reads: (key?: string) => (key === undefined ? anyReaders[lowerOf(priority, 'read')] : readerView(key, lowerOf(priority, 'read'))),
      withPriority: (other: Priority) => primaryViews[other],
      shedIfOverloaded: () => shedIfPrimaryOverloaded(priority),
    };
  }
  /** The routed database whose `query` reads on behalf of `key`, admitted as `priority` (transactions stay on the primary). */
  function readerView(key: string | undefined, priority: Priority): Database {
    return {
      ...primaryViews[priority],
      query: <R extends pg.QueryResultRow>(text: string, values?: unknown[], name?: string) => onReader(key, priority, (db) => db.query<R>(text, values, name)),
      reads: (other?: string) => (other === undefined && key === undefined ? anyReaders[lowerOf(priority, 'read')] : readerView(other ?? key, lowerOf(priority, 'read'))),
      withPriority: (other: Priority) => (key === undefined ? anyReaders[other] : readerView(key, other)),
    };
  }
  const primaryViews = Object.fromEntries(priorities.map((p) => [p, primaryView(p)])) as Record<Priority, Database>;
  // Reads on behalf of nobody in particular (session lookups): one view per class for all of them.
  const anyReaders = Object.fromEntries(priorities.map((p) => [p, readerView(undefined, p)])) as Record<Priority, Database>;
  return routed;
}

function isUnavailable(error: unknown): boolean {
  return error instanceof ParleyError && error.code === 'storage_unavailable';
}

/** `promise`, or a rejection after `ms` if it has not settled by then (a frozen server never answers). */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** FNV-1a: a stable spread of readers over standbys. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
