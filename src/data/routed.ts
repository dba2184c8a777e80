// The app's view of a replicated cluster: one pool per node, every query sent to the node the
// lease names as primary. The topology comes from outside (the app-server process reads the lease
// store), so data/ knows nothing of leases: it is told a name and routes to it.
import type pg from 'pg';
import { ParleyError } from '../errors/errors.ts';
import { createDatabase, isConnectionLost, neverReachedServer, type Database, type DatabaseOptions, type Queryable } from './database.ts';

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

/** A Database that follows the primary: `setPrimary(name)` switches every new query to it. */
export interface RoutedDatabase extends Database {
  setPrimary(name: string | undefined): void;
  primary(): string | undefined;
}

// How often a query waiting for a primary looks again.
const waitStepMs = 50;

/**
 * Creates pools lazily, one per node; queries go to the current primary. While there is none, or
 * the primary cannot be reached (a failover or switchover under way), a query waits up to
 * `failoverWaitMs` for one and runs there — so clients see a pause, not an error — then fails with
 * 503. Only failures before the statement could take effect are waited out (neverReachedServer).
 */
export function createRoutedDatabase(nodes: readonly NodeUrl[], options: Omit<DatabaseOptions, 'url'> & { failoverWaitMs?: number }): RoutedDatabase {
  const failoverWaitMs = options.failoverWaitMs ?? 0;
  const pools = new Map<string, Database>();
  let current: string | undefined;

  function target(): Database {
    const name = current;
    if (name === undefined) {
      throw new ParleyError('storage_unavailable', 'No primary database right now (a failover may be under way); retry shortly', { retryAfterSeconds: 2 });
    }
    let pool = pools.get(name);
    if (!pool) {
      const node = nodes.find((n) => n.name === name);
      if (!node) throw new ParleyError('storage_unavailable', `The lease names "${name}", which is not a known node`, { retryAfterSeconds: 2 });
      pool = createDatabase({ ...options, url: node.url, applicationName: `${options.applicationName ?? 'parley'}-${name}` });
      pools.set(name, pool);
    }
    return pool;
  }

  async function onPrimary<T>(run: (db: Database) => Promise<T>, rerunIfLost = false): Promise<T> {
    const deadline = Date.now() + failoverWaitMs;
    for (;;) {
      const tried = current;
      try {
        return await run(target());
      } catch (error) {
        const waitable = current === undefined || neverReachedServer(error) || (rerunIfLost && isConnectionLost(error));
        if (!waitable || Date.now() + waitStepMs > deadline) throw error;
      }
      // Wait for the lease to name a primary (or another one), or for this one to answer again.
      const until = Math.min(deadline, Date.now() + 1000);
      while (current === tried && current === undefined && Date.now() < until) await sleep(waitStepMs);
      if (current === tried) await sleep(waitStepMs);
    }
  }

  return {
    setPrimary(name) {
      if (name === current) return;
      const previous = current;
      current = name;
      // Connections to a demoted primary are useless for writes; close them so none lingers.
      if (previous !== undefined) {
        const old = pools.get(previous);
        pools.delete(previous);
        void old?.close().catch(() => undefined);
      }
    },
    primary: () => current,
    query<R extends pg.QueryResultRow>(text: string, values?: unknown[], name?: string) {
      return onPrimary((db) => db.query<R>(text, values, name), rerunnable(text));
    },
    transaction<T>(fn: (client: Queryable) => Promise<T>) {
      return onPrimary((db) => db.transaction(fn));
    },
    stats() {
      const pool = current === undefined ? undefined : pools.get(current);
      return pool ? pool.stats() : { total: 0, idle: 0, waiting: 0 };
    },
    async close() {
      await Promise.all([...pools.values()].map((pool) => pool.close().catch(() => undefined)));
      pools.clear();
    },
  };
}
