// The app's view of a replicated cluster: one pool per node, every query sent to the node the
// lease names as primary. The topology comes from outside (the app-server process reads the lease
// store), so data/ knows nothing of leases: it is told a name and routes to it.
import type pg from 'pg';
import { ParleyError } from '../errors/errors.ts';
import { createDatabase, type Database, type DatabaseOptions, type Queryable } from './database.ts';

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

/** Creates pools lazily, one per node; queries go to the current primary or fail fast with 503. */
export function createRoutedDatabase(nodes: readonly NodeUrl[], options: Omit<DatabaseOptions, 'url'>): RoutedDatabase {
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
      return target().query<R>(text, values, name);
    },
    transaction<T>(fn: (client: Queryable) => Promise<T>) {
      return target().transaction(fn);
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
