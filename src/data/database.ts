// The app's connection to PostgreSQL: a bounded pool with a timeout on every query, and one place
// that turns driver failures into ParleyErrors (storage_unavailable / overloaded) with Retry-After.
import pg from 'pg';
import { ParleyError, isParleyError } from '../errors/errors.ts';

/** Pool limits; every wait has a bound. */
export interface DatabaseOptions {
  url: string;
  poolSize: number;
  queryTimeoutMs: number;
  connectTimeoutMs: number;
  /** Requests allowed to queue for a connection before new ones are shed. */
  waitingMax?: number;
  applicationName?: string;
}

/** Anything that runs a parameterised query: the pool or a client inside a transaction. */
export interface Queryable {
  /** `name` makes it a prepared statement on each connection: parsed and planned once (hot paths). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[], name?: string): Promise<pg.QueryResult<R>>;
}

/** The app's handle on the database. */
export interface Database extends Queryable {
  /** Runs `fn` in a transaction; commits on return, rolls back on throw. */
  transaction<T>(fn: (client: Queryable) => Promise<T>): Promise<T>;
  /** Pool counters for metrics and readiness. */
  stats(): { total: number; idle: number; waiting: number };
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
    (typeof code === 'string' && (code.startsWith('08') || unavailableStates.has(code))) ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH'].includes(code ?? '') ||
    /timeout|terminat|Connection ended|not queryable|connection/i.test(message);
  if (isConnection) {
    const why = code === '57014' ? 'query timed out' : code === '25006' ? 'database is read-only' : message;
    return new ParleyError('storage_unavailable', `The database is not answering right now (${why}); retry shortly`, {
      retryAfterSeconds: 2,
      cause: error,
    });
  }
  return error;
}

function cancelledSyncWait(): ParleyError {
  return new ParleyError(
    'storage_unavailable',
    'The database could not confirm the write on a standby in time; it is not acknowledged (retry with the same clientMessageId)',
    { retryAfterSeconds: 2 },
  );
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
  const waitingMax = options.waitingMax ?? options.poolSize * 50;

  function admit(): void {
    if (pool.waitingCount >= waitingMax) {
      throw new ParleyError('overloaded', `Too many requests are waiting for the database (${pool.waitingCount}); retry shortly`, {
        retryAfterSeconds: 1,
      });
    }
  }

  return {
    async query<R extends pg.QueryResultRow>(text: string, values?: unknown[], name?: string) {
      admit();
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw classifyDatabaseError(error);
      }
      // PostgreSQL answers a commit whose wait for the synchronous standby was cancelled (a
      // timeout) with success and a WARNING: the row is visible on the primary but not durable
      // on a standby. Such an answer must never acknowledge anything (DESIGN.md, hard cases).
      let syncCancelled = false;
      const onNotice = (notice: { message?: string }): void => {
        if (/synchronous replication/i.test(notice.message ?? '')) syncCancelled = true;
      };
      client.on('notice', onNotice);
      // A connection that failed (not a query that failed) is dropped rather than reused.
      let drop = false;
      try {
        const result = name ? await client.query<R>({ name, text, values: values ?? [] }) : await client.query<R>(text, values);
        if (syncCancelled) throw cancelledSyncWait();
        return result;
      } catch (error) {
        const classified = classifyDatabaseError(error);
        drop = isParleyError(classified) && classified.code === 'storage_unavailable';
        throw classified;
      } finally {
        client.off('notice', onNotice);
        client.release(drop);
      }
    },
    async transaction<T>(fn: (client: Queryable) => Promise<T>): Promise<T> {
      admit();
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw classifyDatabaseError(error);
      }
      let broken = false;
      let syncCancelled = false;
      const onNotice = (notice: { message?: string }): void => {
        if (/synchronous replication/i.test(notice.message ?? '')) syncCancelled = true;
      };
      client.on('notice', onNotice);
      try {
        await client.query('BEGIN');
        const tx: Queryable = { query: (text, values, name) => (name ? client.query({ name, text, values: values ?? [] }) : client.query(text, values)) };
        const result = await fn(tx);
        await client.query('COMMIT');
        if (syncCancelled) {
          broken = true;
          throw cancelledSyncWait();
        }
        return result;
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch {
          broken = true;
        }
        throw classifyDatabaseError(error);
      } finally {
        client.off('notice', onNotice);
        client.release(broken);
      }
    },
    stats() {
      return { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount };
    },
    async close() {
      await pool.end();
    },
  };
}
