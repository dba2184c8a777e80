// The app-server child process that `parley up` starts (`parley app-server`). It serves the API,
// tells its parent over IPC when it is ready, and exits as soon as that channel closes, so a
// supervisor killed with -9 leaves no app server behind.
import { startAppServer, type AppServer } from '../api/api.ts';
import { loadConfig } from '../config/config.ts';
import { existsSync, readFileSync } from 'node:fs';
import type { Config } from '../config/config.ts';
import { appDatabaseName, appRoleName, createRoutedDatabase, databaseUrl as makeUrl, type RoutedDatabase } from '../data/data.ts';
import { ParleyError } from '../errors/errors.ts';
import { createLocalLeaseClient, leaseKeys } from '../failover/failover.ts';
import { readJson, readSecrets, statePaths, type ClusterFile, type LeaseFile, type StatePaths } from './state.ts';

/** The message an app server sends its supervisor once it listens. */
export interface ReadyMessage {
  type: 'ready';
  url: string;
}

// Bound on a graceful close; open WebSockets or slow requests must not keep a stopping server up.
const closeTimeoutMs = 5000;

/** Runs one app server until SIGTERM/SIGINT or until its supervisor's IPC channel closes. */
export async function runAppServer(options: { dir: string; port: number; configFile?: string }): Promise<void> {
  // The supervisor passes its command-line overrides as PARLEY_* variables, so this is the very
  // configuration it validated; --port only says which of its consecutive ports is ours.
  const config = loadConfig({ file: options.configFile, env: process.env });
  const paths = statePaths(options.dir);
  const databaseUrl = process.env.PARLEY_DATABASE_URL;
  let follow: { database: RoutedDatabase; stop(): Promise<void> } | undefined;
  if (!databaseUrl) {
    if (!existsSync(paths.clusterFile)) {
      throw new ParleyError('cli_usage', 'app-server is started by parley up (which writes DIR/cluster.json), or with PARLEY_DATABASE_URL set');
    }
    follow = followPrimary(paths, config);
  }

  let server: AppServer | undefined;
  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    console.log(`app server on port ${options.port}: stopping (${why})`);
    const timer = setTimeout(() => {
      console.error(`app server on port ${options.port}: close took over ${closeTimeoutMs} ms; exiting anyway`);
      process.exit(1);
    }, closeTimeoutMs);
    timer.unref();
    void (server?.close() ?? Promise.resolve())
      .catch((error: unknown) => console.error(`app server on port ${options.port}: close failed: ${(error as Error).message}`))
      .finally(() => process.exit(0));
  };
  // Registered before listening: a supervisor that dies during our start must still take us down.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (process.send) {
    process.on('disconnect', () => stop('supervisor gone'));
    if (!process.connected) stop('supervisor gone');
  }

  // The ops process's address, read on every call: it may have restarted on another port.
  const ops = (): { url: string; token: string } | undefined => {
    try {
      return JSON.parse(readFileSync(paths.opsFile, 'utf8')) as { url: string; token: string };
    } catch {
      return undefined;
    }
  };
  server = follow
    ? await startAppServer({ config, database: follow.database, port: options.port, host: config.http.host, ops })
    : await startAppServer({ config, databaseUrl, port: options.port, host: config.http.host });
  if (follow) {
    const closeServer = server.close;
    const routed = follow;
    server = { url: server.url, close: async () => { await routed.stop(); await closeServer(); } };
  }
  if (stopping) {
    await server.close();
    return;
  }
  console.log(`app server on port ${options.port}: listening at ${server.url} (pid ${process.pid}, dir ${options.dir})`);
  const ready: ReadyMessage = { type: 'ready', url: server.url };
  process.send?.(ready);
}

// How often an app server reads the lease store, and how often its data layer probes each node.
const topologyIntervalMs = 250;
const probeIntervalMs = 250;

/** What an agent publishes under members/<name> that the app server reads. */
interface PublishedMember {
  name: string;
  publishedAtMs: number;
  running: boolean;
  role: string;
  upstream: string | null;
  streaming: boolean;
}

/**
 * A routed database that follows the cluster: every `topologyIntervalMs` the app server reads the
 * leader record, the maintenance record and the agents' published states from the lease store,
 * and tells the data layer who is primary, which standbys stream from it, and whether maintenance
 * holds failover back. The data layer probes the nodes itself for what changes faster.
 */
function followPrimary(paths: StatePaths, config: Config): { database: RoutedDatabase; stop(): Promise<void> } {
  const cluster = readJson<ClusterFile>(paths.clusterFile, 'the cluster layout');
  const lease = readJson<LeaseFile>(paths.leaseFile, 'the lease store address');
  const secrets = readSecrets(paths);
  if (!secrets) throw new ParleyError('not_found', `${paths.secretsFile} is missing`);
  const database = createRoutedDatabase(
    cluster.members.map((m) => ({ name: m.name, url: makeUrl({ port: m.port, user: appRoleName, password: secrets.appPassword, database: appDatabaseName }) })),
    {
      poolSize: config.data.poolSize,
      queryTimeoutMs: config.data.queryTimeoutMs,
      connectTimeoutMs: config.data.connectTimeoutMs,
      applicationName: 'parley-app',
      failoverWaitMs: config.data.failoverWaitMs,
      readMaxLagBytes: config.data.readMaxLagBytes,
      readMaxLagMs: config.data.readMaxLagMs,
      probeIntervalMs,
    },
  );
  const store = createLocalLeaseClient({ url: lease.url, token: lease.token, timeoutMs: 1000 });
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let lastPool = '';
  const tick = async (): Promise<void> => {
    try {
      const [leader, maintenance, members] = await Promise.all([store.get(leaseKeys.leader), store.get(leaseKeys.maintenance), store.list(leaseKeys.memberPrefix)]);
      const now = Date.now();
      let primary: string | undefined;
      if (leader) {
        const record = JSON.parse(leader.value) as { holder: string; expiresAtMs: number; released: boolean };
        if (!record.released && record.expiresAtMs > now) primary = record.holder;
      }
      const m = maintenance ? (JSON.parse(maintenance.value) as { active: boolean; expiresAtMs: number; node?: string | null }) : undefined;
      const held = m !== undefined && m.active && m.expiresAtMs > now && (m.node ?? null) === null;
      // Fresh within a few agent loops, running, and streaming from the primary.
      const fresh = now - 4 * config.cluster.loopIntervalMs;
      const streaming = members
        .map((entry) => JSON.parse(entry.value) as PublishedMember)
        .filter((s) => s.publishedAtMs >= fresh && s.running && s.role === 'standby' && s.upstream === primary && s.streaming)
        .map((s) => s.name);
      if (primary !== database.primary()) console.log(`app server: primary is now ${primary ?? '(none)'}`);
      database.setTopology({ primary, maintenance: held, streaming });
      const pool = database.readPool().join(', ');
      if (pool !== lastPool) console.log(`app server: read pool is now ${pool || '(empty: reads go to the primary)'}`);
      lastPool = pool;
    } catch {
      // Lease store unreachable: keep routing as last known; the primary's agent fences it if needed.
    }
    if (!stopped) timer = setTimeout(() => void tick(), topologyIntervalMs);
  };
  void tick();
  return {
    database,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await store.close();
    },
  };
}
