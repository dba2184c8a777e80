// What `parley up` keeps in its state directory (DIR, `.parley` by default): the secrets generated
// once, the node data directories, the logs, and supervisor.json, which tells `down`, `status` and
// the next `up` what is running. supervisor.json doubles as the lock that keeps two supervisors
// off one DIR: it is created exclusively and removed on a clean stop.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ParleyError } from '../errors/errors.ts';

/** Where everything lives inside one state directory. */
export interface StatePaths {
  dir: string;
  secretsFile: string;
  stateFile: string;
  logsDir: string;
  nodesDir: string;
  /** URL and token of the lease store the supervisor serves (mode 0600). */
  leaseFile: string;
  /** The last leader record seen, so a restarted lease store knows who held the lease. */
  leaseRecordFile: string;
  /** The members: names, ports and data directories, read by agents and app servers. */
  clusterFile: string;
  /** Append-only journal of every agent decision and action (JSON lines). */
  journalFile: string;
  /** URL, token and pid of the running ops process (mode 0600), read by `parley alerts` and app servers. */
  opsFile: string;
  /** The ops process's saved state: alert states, escalations, acknowledgements. */
  opsDir: string;
}

/** What DIR/ops.json holds. */
export interface OpsFile {
  url: string;
  token: string;
  pid: number;
}

/** The paths of a state directory, made absolute so child processes and messages agree. */
export function statePaths(dir: string): StatePaths {
  const abs = resolve(dir);
  return {
    dir: abs,
    secretsFile: join(abs, 'secrets.json'),
    stateFile: join(abs, 'supervisor.json'),
    logsDir: join(abs, 'logs'),
    nodesDir: join(abs, 'nodes'),
    leaseFile: join(abs, 'lease.json'),
    leaseRecordFile: join(abs, 'lease-record.json'),
    clusterFile: join(abs, 'cluster.json'),
    journalFile: join(abs, 'journal.jsonl'),
    opsFile: join(abs, 'ops.json'),
    opsDir: join(abs, 'ops'),
  };
}

/** The data directory of one node, e.g. DIR/nodes/node1/data. */
export function nodeDataDir(paths: StatePaths, name: string): string {
  return join(paths.nodesDir, name, 'data');
}

/** Passwords generated on the first `up` and reused on every later one. */
export interface Secrets {
  superuserPassword: string;
  appPassword: string;
  /** The replication role's password; added to older secrets files on first use. */
  replicationPassword: string;
}

/** Reads DIR/secrets.json, or undefined when there is none yet. */
export function readSecrets(paths: StatePaths): Secrets | undefined {
  if (!existsSync(paths.secretsFile)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(paths.secretsFile, 'utf8'));
  } catch (error) {
    throw new ParleyError('config_invalid', `${paths.secretsFile} is not valid JSON (${(error as Error).message})`);
  }
  const secrets = value as Partial<Secrets> | null;
  if (typeof secrets?.superuserPassword !== 'string' || typeof secrets.appPassword !== 'string') {
    throw new ParleyError('config_invalid', `${paths.secretsFile} lacks superuserPassword or appPassword`);
  }
  let replicationPassword = (secrets as { replicationPassword?: unknown }).replicationPassword;
  if (typeof replicationPassword !== 'string') {
    replicationPassword = randomBytes(24).toString('base64url');
    const updated = { ...secrets, replicationPassword };
    writeFileSync(`${paths.secretsFile}.tmp`, `${JSON.stringify(updated, null, 2)}\n`, { mode: 0o600 });
    renameSync(`${paths.secretsFile}.tmp`, paths.secretsFile);
  }
  return { superuserPassword: secrets.superuserPassword, appPassword: secrets.appPassword, replicationPassword: replicationPassword as string };
}

/** Reads the secrets, generating them (mode 0600) on the first run. */
export function loadOrCreateSecrets(paths: StatePaths): Secrets {
  const existing = readSecrets(paths);
  if (existing) return existing;
  const secrets: Secrets = {
    superuserPassword: randomBytes(24).toString('base64url'),
    appPassword: randomBytes(24).toString('base64url'),
    replicationPassword: randomBytes(24).toString('base64url'),
  };
  // 'wx': never overwrite a secrets file another process wrote in between; the passwords in it
  // are the only way into an existing data directory.
  writeFileSync(paths.secretsFile, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(paths.secretsFile, 0o600);
  return secrets;
}

/** One PostgreSQL node as recorded in supervisor.json. */
export interface NodeRecord {
  name: string;
  port: number;
  /** Postmaster pid, or null while the node is down (crashed, restarting). */
  pid: number | null;
  /** The node's agent process, or null while it is down. */
  agentPid?: number | null;
  dataDir: string;
}

/** One app server as recorded in supervisor.json. */
export interface AppServerRecord {
  url: string;
  port: number;
  /** Process pid, or null while it is down (crashed, restarting). */
  pid: number | null;
}

/** The content of DIR/supervisor.json. */
export interface SupervisorState {
  pid: number;
  startedAt: string;
  dir: string;
  /** starting → up → stopping; the file is removed once everything has stopped. */
  state: 'starting' | 'up' | 'stopping';
  nodes: NodeRecord[];
  appServers: AppServerRecord[];
  /** The ops process (monitor → alerting); absent in files written before it existed. */
  ops?: { pid: number | null; url: string | null };
}

/** Reads DIR/supervisor.json, or undefined when there is none. */
export function readState(paths: StatePaths): SupervisorState | undefined {
  let text: string;
  try {
    text = readFileSync(paths.stateFile, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const value = JSON.parse(text) as SupervisorState;
    if (!Number.isInteger(value.pid) || !Array.isArray(value.nodes) || !Array.isArray(value.appServers)) return undefined;
    return value;
  } catch {
    // A torn or foreign file: treat as absent rather than crash; `up` replaces it.
    return undefined;
  }
}

/** Rewrites supervisor.json atomically (write, then rename), so readers never see half a file. */
export function writeState(paths: StatePaths, state: SupervisorState): void {
  const temp = `${paths.stateFile}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
  renameSync(temp, paths.stateFile);
}

/** Removes supervisor.json (clean stop). */
export function removeState(paths: StatePaths): void {
  rmSync(paths.stateFile, { force: true });
}

/**
 * Takes DIR for this process: creates supervisor.json exclusively. A file left by a supervisor
 * that is gone (kill -9, power loss) is returned as `stale` so the caller can clean up after it;
 * a live one means another `up` owns DIR.
 */
export function claimStateDir(paths: StatePaths, initial: SupervisorState): { stale: SupervisorState | undefined } {
  mkdirSync(paths.dir, { recursive: true });
  // The server's OS account must be able to walk down to its data directory. Best effort: when
  // DIR belongs to someone else, assertReachable later explains what is wrong.
  try {
    chmodSync(paths.dir, 0o755);
  } catch {
    // not ours to change
  }
  let stale: SupervisorState | undefined;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(paths.stateFile, `${JSON.stringify(initial, null, 2)}\n`, { mode: 0o644, flag: 'wx' });
      return { stale };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const existing = readState(paths);
    if (existing && existing.pid !== process.pid && isParleyProcess(existing.pid)) {
      throw new ParleyError('conflict', `Parley is already running in ${paths.dir} (supervisor pid ${existing.pid}); stop it with parley down --dir ${paths.dir}`);
    }
    stale = existing ?? stale;
    rmSync(paths.stateFile, { force: true });
  }
  throw new ParleyError('conflict', `cannot claim ${paths.stateFile}: another parley up is starting in ${paths.dir}`);
}

/** True while `pid` is a live process (a zombie counts as gone: it has exited, only unreaped). */
export function isAlive(pid: number | null | undefined): boolean {
  if (pid === null || pid === undefined || !Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).charAt(0) !== 'Z';
  } catch {
    // No /proc (not Linux) or it vanished between the two looks: trust kill(0) or call it gone.
    return existsSync('/proc/self') ? false : true;
  }
}

/** True when `pid` is alive and (where /proc tells) is a `parley` process, not a recycled pid. */
export function isParleyProcess(pid: number): boolean {
  if (!isAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('parley');
  } catch {
    return true;
  }
}

/** DIR/cluster.json: what agents and app servers need to find each other. */
export interface ClusterFile {
  members: Array<{ name: string; port: number; dataDir: string }>;
}

/** DIR/lease.json: how to reach the lease store the supervisor serves. */
export interface LeaseFile {
  url: string;
  token: string;
}

/** Writes a small JSON file atomically with the given mode. */
export function writeJson(file: string, value: unknown, mode = 0o644): void {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(value, null, 2)}\n`, { mode });
  chmodSync(temp, mode);
  renameSync(temp, file);
}

/** Reads a JSON file written by writeJson; a one-line error names the file otherwise. */
export function readJson<T>(file: string, what: string): T {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (error) {
    throw new ParleyError('not_found', `cannot read ${what} (${file}): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}; is parley up running?`);
  }
}
