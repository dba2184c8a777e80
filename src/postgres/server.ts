// One PostgreSQL server: initdb, configure, start, stop, probe. When Parley runs as root the server
// runs as an unprivileged OS account (PostgreSQL refuses root) that owns its data directory.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { ParleyError } from '../errors/errors.ts';
import type { PgBinaries } from './binaries.ts';

/** uid/gid to run the server as, or undefined when we are not root. */
export interface OsAccount {
  uid: number;
  gid: number;
  name: string;
}

/** The account PostgreSQL runs as: `osUser` when we are root, ourselves otherwise. */
export function serverAccount(osUser: string): OsAccount | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', osUser], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', osUser], { encoding: 'utf8' }).trim());
    return { uid, gid, name: osUser };
  } catch {
    throw new ParleyError(
      'config_invalid',
      `running as root, PostgreSQL needs an unprivileged OS account: "${osUser}" does not exist (create it with useradd --system ${osUser}, or set postgres.osUser)`,
    );
  }
}

/** Hands a path (and, for directories, nothing below it) to the server's account. */
export function giveToAccount(path: string, account: OsAccount | undefined): void {
  if (account) chownSync(path, account.uid, account.gid);
}

function run(bin: PgBinaries, account: OsAccount | undefined, tool: string, args: string[]): string {
  try {
    return execFileSync(join(bin.dir, tool), args, {
      encoding: 'utf8',
      uid: account?.uid,
      gid: account?.gid,
      env: { ...process.env, ...bin.env, LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: '/',
    });
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? '').trim().split('\n').slice(-3).join(' | ');
    throw new ParleyError('storage_unavailable', `${tool} ${args[0] ?? ''} failed: ${stderr || (error as Error).message}`, { cause: error });
  }
}

/** Settings Parley writes into each node's `parley.conf`. */
export interface ServerSettings {
  port: number;
  maxConnections: number;
  sharedBuffers: string;
  /** Extra lines, e.g. replication settings from the cluster. */
  extra?: Record<string, string | number | boolean>;
}

function quote(value: string | number | boolean): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  return `'${value.replace(/'/g, "''")}'`;
}

/** Writes parley.conf (included from postgresql.conf) and pg_hba.conf for a data directory. */
export function writeServerSettings(dataDir: string, settings: ServerSettings, account: OsAccount | undefined): void {
  const lines: Record<string, string | number | boolean> = {
    listen_addresses: '127.0.0.1',
    port: settings.port,
    // TCP only: the socket directory would need to be writable by the server account.
    unix_socket_directories: '',
    max_connections: settings.maxConnections,
    shared_buffers: settings.sharedBuffers,
    password_encryption: 'scram-sha-256',
    wal_level: 'replica',
    max_wal_senders: 10,
    max_replication_slots: 10,
    hot_standby: true,
    hot_standby_feedback: true,
    wal_log_hints: true,
    wal_keep_size: '256MB',
    logging_collector: false,
    log_line_prefix: '%m [%p] ',
    log_min_messages: 'warning',
    ...settings.extra,
  };
  const conf = Object.entries(lines)
    .map(([k, v]) => `${k} = ${quote(v)}`)
    .join('\n');
  const confFile = join(dataDir, 'parley.conf');
  writeFileSync(confFile, `# Written by Parley; edits are overwritten on start.\n${conf}\n`);
  giveToAccount(confFile, account);
  const hba = [
    '# Written by Parley: TCP on loopback only, passwords always (scram-sha-256).',
    'host all all 127.0.0.1/32 scram-sha-256',
    'host replication all 127.0.0.1/32 scram-sha-256',
  ].join('\n');
  const hbaFile = join(dataDir, 'pg_hba.conf');
  writeFileSync(hbaFile, `${hba}\n`);
  giveToAccount(hbaFile, account);
  const main = join(dataDir, 'postgresql.conf');
  const text = readFileSync(main, 'utf8');
  if (!text.includes("include_if_exists = 'parley.conf'")) {
    writeFileSync(main, `${text}\ninclude_if_exists = 'parley.conf'\n`);
  }
}

/** True when `dataDir` holds an initialised cluster. */
export function isInitialised(dataDir: string): boolean {
  return existsSync(join(dataDir, 'PG_VERSION'));
}

/** initdb with data checksums and a scram password for the `postgres` superuser. */
export function initDataDir(options: {
  bin: PgBinaries;
  dataDir: string;
  account: OsAccount | undefined;
  superuserPassword: string;
}): void {
  const { bin, dataDir, account } = options;
  mkdirSync(dirname(dataDir), { recursive: true });
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  giveToAccount(dataDir, account);
  // The password file is read by initdb as the server's account, then removed.
  const pwfile = join(dirname(dataDir), `.pw-${process.pid}-${Date.now()}`);
  writeFileSync(pwfile, `${options.superuserPassword}\n`, { mode: 0o600 });
  giveToAccount(pwfile, account);
  try {
    run(bin, account, 'initdb', [
      '-D', dataDir,
      '--data-checksums',
      '--username=postgres',
      '--auth=scram-sha-256',
      `--pwfile=${pwfile}`,
      '--encoding=UTF8',
      '--locale=C',
      '--no-instructions',
    ]);
  } finally {
    try {
      execFileSync('rm', ['-f', pwfile]);
    } catch {
      // best effort: the file is 0600 and holds a throwaway-strength secret only for this cluster
    }
  }
}

/** A running PostgreSQL server started by us (our child process). */
export interface ServerHandle {
  pid: number;
  port: number;
  dataDir: string;
  child: ChildProcess;
  /** Resolves when the server process has exited (code or signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Reads postmaster.pid: the pid of a server still running on this data directory, if any. */
export function runningPid(dataDir: string): number | undefined {
  const file = join(dataDir, 'postmaster.pid');
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
  } catch {
    return undefined;
  }
  // A killed postmaster whose parent died too lingers as a zombie where init does not reap: gone.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).charAt(0) === 'Z') return undefined;
  } catch {
    // no /proc: trust kill(0)
  }
  return pid;
}

/** Stops a server left running on `dataDir` by an earlier run that died (fast shutdown, then kill). */
export async function stopStrayServer(dataDir: string, timeoutMs = 30_000): Promise<boolean> {
  const pid = runningPid(dataDir);
  if (pid === undefined) return false;
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (runningPid(dataDir) === undefined) return true;
    await sleep(100);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
  return true;
}

/** Starts `postgres -D dataDir` as our child and waits until it accepts connections. */
export async function startServer(options: {
  bin: PgBinaries;
  dataDir: string;
  account: OsAccount | undefined;
  port: number;
  logFile: string;
  superuserPassword: string;
  readyTimeoutMs?: number;
}): Promise<ServerHandle> {
  const { bin, dataDir, account, port } = options;
  await stopStrayServer(dataDir);
  mkdirSync(dirname(options.logFile), { recursive: true });
  const log = openSync(options.logFile, 'a');
  const child = spawn(join(bin.dir, 'postgres'), ['-D', dataDir], {
    uid: account?.uid,
    gid: account?.gid,
    env: { ...process.env, ...bin.env, LC_ALL: 'C' },
    stdio: ['ignore', log, log],
    cwd: '/',
    // Its own process group: a Ctrl-C in the terminal reaches the supervisor, which stops the app
    // servers first and PostgreSQL last, instead of PostgreSQL shutting down at the same moment.
    detached: true,
  });
  closeSync(log);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const handle: ServerHandle = { pid: child.pid ?? -1, port, dataDir, child, exited };
  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  let lastError = '';
  let dead = false;
  void exited.then(() => {
    dead = true;
  });
  while (Date.now() < deadline) {
    if (dead) break;
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'postgres',
      password: options.superuserPassword,
      database: 'postgres',
      connectionTimeoutMillis: 1000,
    });
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return handle;
    } catch (error) {
      lastError = (error as Error).message;
      await client.end().catch(() => undefined);
      await sleep(100);
    }
  }
  await stopServer(handle, { timeoutMs: 5000 });
  const tail = existsSync(options.logFile) ? readFileSync(options.logFile, 'utf8').trim().split('\n').slice(-3).join(' | ') : '';
  throw new ParleyError('storage_unavailable', `PostgreSQL in ${dataDir} did not become ready on port ${port}: ${tail || lastError}`);
}

/** Stops a server we started: fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL. */
export async function stopServer(handle: ServerHandle, options: { timeoutMs?: number } = {}): Promise<void> {
  if (handle.child.exitCode !== null || handle.child.signalCode !== null) return;
  const timeoutMs = options.timeoutMs ?? 30_000;
  for (const signal of ['SIGINT', 'SIGQUIT', 'SIGKILL'] as const) {
    try {
      handle.child.kill(signal);
    } catch {
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      handle.exited.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), signal === 'SIGINT' ? timeoutMs : 5000);
      }),
    ]);
    clearTimeout(timer);
    if (done) return;
  }
}

/** What a probe of one server sees. */
export interface ServerProbe {
  role: 'primary' | 'standby';
  /** Current WAL position (primary: insert LSN; standby: replay LSN). */
  lsn: string;
  timeline: number;
}

/** Asks a running server for its role and WAL position. */
export async function probeServer(connection: pg.ClientConfig): Promise<ServerProbe> {
  const client = new pg.Client({ connectionTimeoutMillis: 2000, statement_timeout: 2000, ...connection });
  try {
    await client.connect();
    const result = await client.query<{ recovery: boolean; lsn: string | null; timeline: number }>(
      `SELECT pg_is_in_recovery() AS recovery,
              CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END AS lsn,
              (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline`,
    );
    const row = result.rows[0]!;
    return { role: row.recovery ? 'standby' : 'primary', lsn: row.lsn ?? '0/0', timeline: row.timeline };
  } finally {
    await client.end().catch(() => undefined);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
