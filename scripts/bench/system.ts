// The system under test: a durable throwaway PostgreSQL (fsync, synchronous_commit and full page
// writes on, as in production), provisioned like `parley up` does it, and app servers started as
// their own OS processes (`parley app-server`) so that their RSS and CPU are theirs alone.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { appDatabaseName, appRoleName, databaseUrl, provisionDatabase } from '../../src/data/data.ts';
import { freePort, startThrowawayServer, type ThrowawayServer } from '../../src/postgres/postgres.ts';
import type { Cleanup } from './cleanup.ts';

/** PostgreSQL settings for the benchmark: durable like production (the throwaway default is not). */
export const durableSettings = {
  fsync: true,
  synchronous_commit: 'on',
  full_page_writes: true,
  // Production's defaults (config postgres.sharedBuffers / maxConnections), not the tests' smaller ones.
  shared_buffers: '128MB',
  max_connections: 200,
  // Per-statement timings for the report (bench/statements.ts); not a durability setting.
  shared_preload_libraries: 'pg_stat_statements',
} as const;

// pg_settings gives sizes as a count of units ("16384" of "8kB"); people read "128 MB".
function withUnit(setting: string, unit: string | null): string {
  const unitBytes: Record<string, number> = { B: 1, kB: 1024, '8kB': 8192, MB: 2 ** 20, '16MB': 2 ** 24 };
  const bytes = unit ? unitBytes[unit] : undefined;
  if (bytes === undefined) return unit ? `${setting} ${unit}` : setting;
  const total = Number(setting) * bytes;
  return total >= 2 ** 30 ? `${total / 2 ** 30} GB` : total >= 2 ** 20 ? `${total / 2 ** 20} MB` : `${total / 1024} kB`;
}

/** A running, provisioned database. */
export interface BenchDatabase {
  server: ThrowawayServer;
  /** The app role's URL to the `parley` database. */
  appUrl: string;
  /** The superuser's URL to the `parley` database (pgbench's table lives there too). */
  superuserAppDbUrl: string;
  /** `SELECT version()` */
  version: string;
  /** The settings as the server reports them. */
  settings: Record<string, string>;
}

/** Starts and provisions PostgreSQL; registers its stop with `cleanup`; reports an exit nobody asked for. */
export async function startDatabase(cleanup: Cleanup, onUnexpectedExit: (what: string) => void): Promise<BenchDatabase> {
  const server = await startThrowawayServer({ settings: { ...durableSettings } });
  let stopping = false;
  cleanup.add(`PostgreSQL (pid ${server.handle.pid})`, () => {
    stopping = true;
    return server.stop();
  });
  void server.handle.exited.then(({ code, signal }) => {
    if (!stopping) onUnexpectedExit(`PostgreSQL (pid ${server.handle.pid}) exited during the run (${signal ?? `code ${code}`}); see ${join(server.dir, 'postgres.log')}`);
  });
  const appPassword = randomBytes(18).toString('base64url');
  await provisionDatabase({ superuserUrl: server.superuserUrl, appPassword });
  const appUrl = databaseUrl({ port: server.port, user: appRoleName, password: appPassword, database: appDatabaseName });
  const superuserAppDbUrl = databaseUrl({ port: server.port, user: 'postgres', password: server.superuserPassword, database: appDatabaseName });
  const client = new pg.Client({ connectionString: superuserAppDbUrl });
  await client.connect();
  try {
    const version = (await client.query<{ version: string }>('SELECT version()')).rows[0]!.version;
    const names = ['server_version', 'fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'shared_buffers', 'max_connections', 'max_wal_size'];
    const rows = (await client.query<{ name: string; setting: string; unit: string | null }>(
      'SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])',
      [names],
    )).rows;
    const settings: Record<string, string> = {};
    for (const row of rows) settings[row.name] = withUnit(row.setting, row.unit);
    await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    // The pgbench baseline's table, shaped like a message (bigint key, conversation, body, time).
    await client.query(`
      CREATE TABLE public.bench_insert (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        conversation_id bigint NOT NULL,
        body text NOT NULL,
        sent_at timestamptz NOT NULL DEFAULT now()
      )`);
    return { server, appUrl, superuserAppDbUrl, version, settings };
  } finally {
    await client.end();
  }
}

/** A running app server process. */
export interface AppProcess {
  pid: number;
  url: string;
  logFile: string;
  stop(): Promise<void>;
}

// How long an app server may take to listen, and to exit after SIGTERM before SIGKILL.
const appReadyTimeoutMs = 60_000;
const appStopTimeoutMs = 8_000;

/**
 * Starts `node bin/parley.js app-server` against the app database. The IPC channel makes the
 * server exit on its own should this process die without stopping it.
 */
export async function startAppProcess(options: {
  cleanup: Cleanup;
  repoDir: string;
  stateDir: string;
  databaseUrl: string;
  env: Record<string, string>;
  name: string;
  onUnexpectedExit: (what: string) => void;
}): Promise<AppProcess> {
  const port = await freePort();
  const logFile = join(options.stateDir, `${options.name}.log`);
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, [join(options.repoDir, 'bin/parley.js'), 'app-server', '--dir', options.stateDir, '--port', String(port)], {
    cwd: options.repoDir,
    env: { ...process.env, ...options.env, PARLEY_DATABASE_URL: options.databaseUrl, PARLEY_HTTP_HOST: '127.0.0.1' },
    stdio: ['ignore', log, log, 'ipc'],
  });
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pid = child.pid ?? -1;
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) options.onUnexpectedExit(`app server ${options.name} (pid ${pid}) exited during the run (${signal ?? `code ${code}`}); see ${logFile}`);
  });

  async function stop(): Promise<void> {
    stopping = true;
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([exited.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), appStopTimeoutMs)))]);
    clearTimeout(timer);
    if (!done) {
      child.kill('SIGKILL');
      await exited;
    }
  }
  const release = options.cleanup.add(`app server ${options.name} (pid ${pid})`, stop);

  const tail = (): string => {
    try {
      return readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join(' | ');
    } catch {
      return '';
    }
  };
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`app server ${options.name} did not report ready within ${appReadyTimeoutMs} ms: ${tail()}`)), appReadyTimeoutMs);
    child.on('message', (message: { type?: string; url?: string }) => {
      if (message?.type === 'ready' && typeof message.url === 'string') {
        clearTimeout(timer);
        resolve(message.url);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`app server ${options.name} exited (${signal ?? `code ${code}`}) before it was ready: ${tail()}`));
    });
  }).catch(async (error: unknown) => {
    await release();
    throw error;
  });
  return { pid, url, logFile, stop: release };
}
