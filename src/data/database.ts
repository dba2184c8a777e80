// The app's connection to PostgreSQL: a bounded pool with a timeout on every query, whose
// connections are handed out by priority (admission.ts: sends first; the rest wait, bounded, or are
// shed as 'overloaded'), and one place that turns driver failures into ParleyErrors
// (storage_unavailable) with Retry-After.
import { createConnection } from 'node:net';
import pg from 'pg';
import { ParleyError, isParleyError } from '../errors/errors.ts';
import { lowerOf, priorities, type Priority } from './admission-core.ts';
import { admissionLimitsFor, createAdmission, createAdmissionCounters, sumAdmission, type AdmissionCounters, type AdmissionStats } from './admission.ts';
import { listen, type Subscription } from './listen.ts';

/** Pool limits; every wait has a bound. */
export interface DatabaseOptions {
  url: string;
  poolSize: number;
  queryTimeoutMs: number;
  connectTimeoutMs: number;
  /**
   * Requests that may wait for a connection (all classes together) before the lowest class waiting
   * is shed (data/admission-core.ts). Default: 50 per connection.
   */
  waitingMax?: number;
  applicationName?: string;
  /** Where admitted and shed requests are counted (the routed database shares one between its pools). */
  admissionCounters?: AdmissionCounters;
}

/** Anything that runs a parameterised query: the pool or a client inside a transaction. */
export interface Queryable {
  /** `name` makes it a prepared statement on each connection: parsed and planned once (hot paths). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[], name?: string): Promise<pg.QueryResult<R>>;
}

/** What the app can serve: ok; degraded (reads only, or a failover under way); down. */
export interface DatabaseHealth {
  state: 'ok' | 'degraded' | 'down';
  detail: string;
}

/** The app's handle on the database. */
export interface Database extends Queryable {
  /** Runs `fn` in a transaction; commits on return, rolls back on throw. */
  transaction<T>(fn: (client: Queryable) => Promise<T>): Promise<T>;
  /**
   * The same database for reads on behalf of `reader` (an account): its `query` may go to a
   * standby that has replayed `reader`'s own writes (see `wrote`); transactions stay on the primary.
   */
  reads(reader?: string): Database;
  /** `reader` just wrote: its reads must see it (read-your-writes). */
  wrote(reader: string): void;
  /** What the database can serve now, from what is already known (no query). */
  health(): DatabaseHealth;
  /**
   * The same database, its requests admitted as `priority` (data/admission-core.ts): under overload
   * sends go first, then reads, then typing. The root handle is `send`; `reads()` makes `read`
   * (or keeps a lower class).
   */
  withPriority(priority: Priority): Database;
  /**
   * For work of this handle's class that needs no database (a typing indicator whose members are
   * cached): throws 'overloaded', counted as shed, while the primary's queue stands (overload, see
   * data/admission-core.ts) with requests of this class or a higher one waiting — under overload it
   * is dropped like work that would have waited.
   */
  shedIfOverloaded(): void;
  /** LISTEN on `channel` of the primary, following it (data/listen.ts). */
  listen(channel: string, onNotification: (payload: string) => void, onSubscribed: () => void): Subscription;
  /** Pool counters for metrics and readiness (`waiting`: requests waiting for admission). */
  stats(): { total: number; idle: number; waiting: number };
  /** Admission per class: running and waiting now, admitted and shed since start. */
  admissionStats(): AdmissionStats;
  close(): Promise<void>;
}

// SQLSTATE classes that mean "the database cannot serve right now", not "your request is wrong".
const unavailableStates = new Set(['57014', '57P01', '57P02', '57P03', '53300', '53400', '25006', '40001', '40P01', '58000', '58030']);

/** Maps a driver error to a ParleyError; leaves ParleyErrors and programming errors alone. */
export function classifyDatabaseError(error: unknown): unknown {
  if (isParleyError(error)) return error;
  const code = (error as { code?: string }).code;
  const message = (error as Error)?.message ?? String(error);
  const isConnection =
    refusedInRecovery(error) ||
    (typeof code === 'string' && (code.startsWith('08') || unavailableStates.has(code))) ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH'].includes(code ?? '') ||
    /timeout|terminat|Connection ended|not queryable|connection/i.test(message);
  if (isConnection) {
    const why = code === '57014' ? 'query timed out' : refusedInRecovery(error) ? 'database is read-only' : message;
    return new ParleyError('storage_unavailable', `The database is not answering right now (${why}); retry shortly`, {
      retryAfterSeconds: 2,
      cause: error,
    });
  }
  return error;
}

// Failures after which the statement cannot have taken effect, so running it again anywhere is
// safe: the server refused the connection or is starting or stopping (57P03), or the node is no
// longer a primary and rejected a write outright (refusedInRecovery).
const notReached = new WeakSet<object>();

/** True when `error` came before the statement could take effect on the server (see above). */
export function neverReachedServer(error: unknown): boolean {
  return typeof error === 'object' && error !== null && notReached.has(error);
}

/**
 * True when the node refused a write because it is in recovery (a standby, or a primary demoted by
 * a switchover while the app still routes to it): "read-only transaction" (25006), or a function
 * that tried to assign a transaction id ("cannot assign TransactionIds during recovery", XX000).
 * Nothing was written, so the statement may run again on the new primary.
 */
function refusedInRecovery(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: string; message?: string };
  return code === '25006' || (code === 'XX000' && /during recovery/i.test(message ?? ''));
}

/**
 * True when the connection went away while a statement ran (the server stopped or was killed): the
 * statement may or may not have committed. Only an idempotent one may be run again.
 */
export function isConnectionLost(error: unknown): boolean {
  if (!isParleyError(error) || error.code !== 'storage_unavailable') return false;
  if (outcomeUnknown.has(error)) return true;
  const cause = error.cause as { code?: string; message?: string } | undefined;
  return ['57P01', '57P02', '08006', '08003', 'ECONNRESET', 'EPIPE'].includes(cause?.code ?? '') || /Connection terminated|terminating connection/i.test(cause?.message ?? '');
}

// Failures of a request given up on while its statement may still run (a breaker that opened).
const outcomeUnknown = new WeakSet<object>();

/** Marks `error` as one whose statement may or may not take effect: isConnectionLost says yes. */
export function markOutcomeUnknown<E>(error: E): E {
  if (typeof error === 'object' && error !== null) outcomeUnknown.add(error);
  return error;
}

/** Marks `error` as one that came before its statement could take effect (see neverReachedServer). */
export function markNotReached<E>(error: E): E {
  if (typeof error === 'object' && error !== null) notReached.add(error);
  return error;
}

function cancelledSyncWait(): ParleyError {
  return new ParleyError(
    'storage_unavailable',
    'The database could not confirm the write on a standby in time; it is not acknowledged (retry with the same clientMessageId)',
    { retryAfterSeconds: 2 },
  );
}

/** After statement_timeout would have fired, a little slack before cancelling from outside. */
const cancelGraceMs = 250;

function addressOf(url: string): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname || '127.0.0.1', port: Number(parsed.port || 5432) };
}

/**
 * The protocol's CancelRequest (a separate 16-byte connection naming the backend's pid and secret
 * key): the server interrupts whatever that backend is running. Best effort; a server that does
 * not answer is caught by the client-side query_timeout instead.
 */
function sendCancelRequest(address: { host: string; port: number }, client: pg.PoolClient): void {
  const backend = client as unknown as { processID?: number; secretKey?: number };
  if (backend.processID === undefined || backend.secretKey === undefined) return;
  const message = Buffer.alloc(16);
  message.writeInt32BE(16, 0);
  message.writeInt32BE(80877102, 4);
  message.writeInt32BE(backend.processID, 8);
  message.writeInt32BE(backend.secretKey, 12);
  const socket = createConnection(address, () => socket.end(message));
  socket.setTimeout(2000, () => socket.destroy());
  socket.on('error', () => undefined);
}

/** Opens a bounded pool. Nothing connects until the first query. */
export function createDatabase(options: DatabaseOptions): Database {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.queryTimeoutMs,
    query_timeout: options.queryTimeoutMs + 1000,
    application_name: options.applicationName ?? 'parley',
    keepAlive: true,
  });
  // An idle client that loses its server emits here; without a listener it would crash the process.
  pool.on('error', () => undefined);
  // At most poolSize requests hold a connection; the others wait here, by priority, instead of in
  // pg's first-come queue: under overload the connections go to sends first.
  const counters = options.admissionCounters ?? createAdmissionCounters();
  const admission = createAdmission(admissionLimitsFor(options), counters);
  const serverAddress = addressOf(options.url);
  const listened = new WeakSet<pg.PoolClient>();

  async function connect(): Promise<pg.PoolClient> {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      // No connection, so nothing ran. (A wait for a free connection that timed out is not this:
      // that is overload, and retrying would only add to it.)
      const code = (error as { code?: string }).code ?? '';
      if (/after calling end on the pool/i.test((error as Error)?.message ?? '')) {
        // The routed database closed this node's pool (it is no longer the primary) while the
        // request waited for it: nothing ran, the request goes to the new primary.
        throw markNotReached(new ParleyError('storage_unavailable', 'The database node changed while the request waited; retry shortly', { retryAfterSeconds: 1, cause: error }));
      }
      const classified = classifyDatabaseError(error);
      throw ['ECONNREFUSED', '57P03', '08001', '08006'].includes(code) ? markNotReached(classified) : classified;
    }
    // A server that dies (a failover) sends "terminating connection" to every client; one checked
    // out at that moment emits it as an 'error' event, which without a listener kills the whole app
    // server. The query under way fails on its own and is classified; the event needs no action.
    if (!listened.has(client)) {
      listened.add(client);
      client.on('error', () => undefined);
    }
    return client;
  }

  /**
   * PostgreSQL answers a commit whose wait for the synchronous standby was cancelled with success
   * and a WARNING: the row is on the primary but not on a standby, and must not be acknowledged
   * (DESIGN.md, hard cases). statement_timeout cannot end that wait (PostgreSQL disables it before
   * committing), so `run` sends the server a cancel request of its own at the query deadline; the
   * commit then ends with that warning, which `assertDurable` turns into storage_unavailable.
   * Without the cancel a backend would wait for a standby forever, long after its client gave up.
   */
  function watchCommit(client: pg.PoolClient) {
    let timer: NodeJS.Timeout | undefined;
    const onNotice = (notice: { message?: string }): void => {
      if (/synchronous replication/i.test(notice.message ?? '')) watch.syncCancelled = true;
    };
    client.on('notice', onNotice);
    const watch = {
      syncCancelled: false,
      async run<T>(fn: () => Promise<T>): Promise<T> {
        timer = setTimeout(() => sendCancelRequest(serverAddress, client), options.queryTimeoutMs + cancelGraceMs);
        try {
          return await fn();
        } finally {
          clearTimeout(timer);
        }
      },
      assertDurable(): void {
        if (watch.syncCancelled) throw cancelledSyncWait();
      },
      stop(): void {
        clearTimeout(timer);
        client.off('notice', onNotice);
      },
    };
    return watch;
  }

  async function runQuery<R extends pg.QueryResultRow>(priority: Priority, text: string, values: unknown[] | undefined, name: string | undefined): Promise<pg.QueryResult<R>> {
    const release = await admission.acquire(priority);
    try {
      return await query<R>(text, values, name);
    } finally {
      release();
    }
  }

  async function runTransaction<T>(priority: Priority, fn: (client: Queryable) => Promise<T>): Promise<T> {
    const release = await admission.acquire(priority);
    try {
      return await transaction(fn);
    } finally {
      release();
    }
  }

  async function query<R extends pg.QueryResultRow>(text: string, values: unknown[] | undefined, name: string | undefined): Promise<pg.QueryResult<R>> {
    const client = await connect();
    const watch = watchCommit(client);
    // A connection that failed (not a query that failed) is dropped rather than reused.
    let drop = false;
    try {
      const result = await watch.run(() => (name ? client.query<R>({ name, text, values: values ?? [] }) : client.query<R>(text, values)));
      watch.assertDurable();
      return result;
    } catch (error) {
      const classified = classifyDatabaseError(error);
      drop = isParleyError(classified) && classified.code === 'storage_unavailable' && !watch.syncCancelled;
      // A client already broken (its server went away while it sat idle) fails before sending.
      const neverSent = refusedInRecovery(error) || /not queryable/i.test((error as Error)?.message ?? '');
      throw neverSent ? markNotReached(classified) : classified;
    } finally {
      watch.stop();
      client.release(drop);
    }
  }

  async function transaction<T>(fn: (client: Queryable) => Promise<T>): Promise<T> {
    const client = await connect();
    const watch = watchCommit(client);
    let broken = false;
    try {
      await client.query('BEGIN');
      const tx: Queryable = { query: (text, values, name) => (name ? client.query({ name, text, values: values ?? [] }) : client.query(text, values)) };
      const result = await fn(tx);
      await watch.run(() => client.query('COMMIT'));
      watch.assertDurable();
      return result;
    } catch (error) {
      if (!watch.syncCancelled) {
        try {
          await client.query('ROLLBACK');
        } catch {
          broken = true;
        }
      }
      const classified = classifyDatabaseError(error);
      throw refusedInRecovery(error) ? markNotReached(classified) : classified;
    } finally {
      watch.stop();
      client.release(broken);
    }
  }

  /** The handle whose requests are admitted as `priority`; one per class, made once. */
  function handle(priority: Priority): Database {
    return {
      query: (text, values, name) => runQuery(priority, text, values, name),
      transaction: (fn) => runTransaction(priority, fn),
      reads: () => handles[lowerOf(priority, 'read')],
      withPriority: (other) => handles[other],
      shedIfOverloaded: () => admission.shedIfOverloaded(priority),
      wrote() {},
      health() {
        return { state: 'ok', detail: 'one database' };
      },
      listen(channel, onNotification, onSubscribed) {
        return listen({ channel, onNotification, onSubscribed, primaryUrl: () => options.url, connectTimeoutMs: options.connectTimeoutMs, applicationName: `${options.applicationName ?? 'parley'}-listen` });
      },
      stats() {
        const waiting = admission.snapshot().waiting;
        return { total: pool.totalCount, idle: pool.idleCount, waiting: waiting.send + waiting.read + waiting.typing + pool.waitingCount };
      },
      admissionStats: () => sumAdmission([admission.snapshot()], counters),
      async close() {
        // Requests still waiting never ran: they may go to another node (the routed database's retire).
        admission.close(() => markNotReached(new ParleyError('storage_unavailable', 'The database node changed while the request waited; retry shortly', { retryAfterSeconds: 1 })));
        await pool.end();
      },
    };
  }
  const handles = Object.fromEntries(priorities.map((priority) => [priority, handle(priority)])) as Record<Priority, Database>;
  return handles.send;
}
