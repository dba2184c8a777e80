// Shared by the whole-system tests: starting the real `parley up` as a child process, bounded
// waits, and a clean-up that kills by pid every process a test saw, also when the test failed.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
export const bin = join(repo, 'bin', 'parley.js');
const upReadyTimeoutMs = 90_000;
const cliTimeoutMs = 120_000;
const processTimeoutMs = 30_000;

export interface StateFile {
  pid: number;
  state: string;
  nodes: { name: string; port: number; pid: number | null; agentPid?: number | null; dataDir: string }[];
  appServers: { url: string; port: number; pid: number | null }[];
  ops?: { pid: number | null; url: string | null };
}

/** Every pid a test has seen; the `after` hooks make sure none survives. */
const seenPids = new Set<number>();
const supervisors = new Set<ChildProcess>();
const tempDirs: string[] = [];

/**
 * True while `pid` runs. kill(pid, 0) alone is not enough here: this machine's init does not reap
 * orphans, so an exited orphan lingers as a zombie that kill(0) still finds.
 */
export function alive(pid: number | null | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).charAt(0) !== 'Z';
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = processTimeoutMs): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting until ${what}`);
    await sleep(100);
  }
}

export function makeDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'parley-up-'));
  // PostgreSQL runs as the `postgres` account when we are root; it must be able to walk in here.
  chmodSync(dir, 0o755);
  tempDirs.push(dir);
  return dir;
}

export function readStateFile(dir: string): StateFile | undefined {
  try {
    const state = JSON.parse(readFileSync(join(dir, 'supervisor.json'), 'utf8')) as StateFile;
    remember(state);
    return state;
  } catch {
    return undefined;
  }
}

export function remember(state: StateFile): void {
  seenPids.add(state.pid);
  for (const part of [...state.nodes, ...state.appServers]) if (part.pid) seenPids.add(part.pid);
  for (const node of state.nodes) if (node.agentPid) seenPids.add(node.agentPid);
  if (state.ops?.pid) seenPids.add(state.ops.pid);
}

/** A running `parley up` child and its output so far. */
export interface Up {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

export function startUp(dir: string, port: number, pgPort: number, env: NodeJS.ProcessEnv = {}, args: string[] = []): Up {
  const child = spawn(process.execPath, [bin, 'up', '--dir', dir, '--port', String(port), ...args], {
    cwd: repo,
    // Tests run side by side: the ops process takes a free port instead of 9187.
    env: { ...process.env, PARLEY_POSTGRES_BASE_PORT: String(pgPort), PARLEY_OPS_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  supervisors.add(child);
  if (child.pid) seenPids.add(child.pid);
  let text = '';
  child.stdout!.on('data', (chunk: Buffer) => (text += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => text, exited };
}

export async function waitUp(up: Up, dir: string): Promise<StateFile> {
  let gone = false;
  void up.exited.then(() => (gone = true));
  await waitUntil('"Parley is up" is printed', () => {
    if (gone) throw new Error(`parley up exited before it was up:\n${up.output()}`);
    return up.output().includes('Parley is up');
  }, upReadyTimeoutMs);
  const state = readStateFile(dir);
  assert.ok(state, 'supervisor.json exists while up runs');
  return state;
}

/** Runs `parley ARGS` to completion (bounded) and returns its exit code and output. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: repo, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`parley ${args.join(' ')} took over ${cliTimeoutMs / 1000} s`));
    }, cliTimeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export async function healthz(url: string): Promise<number> {
  try {
    const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.status;
  } catch {
    return 0;
  }
}

export function superuserPassword(dir: string): string {
  return (JSON.parse(readFileSync(join(dir, 'secrets.json'), 'utf8')) as { superuserPassword: string }).superuserPassword;
}

export async function withParleyDatabase<T>(dir: string, port: number, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password: superuserPassword(dir),
    database: 'parley',
    connectionTimeoutMillis: 5000,
    statement_timeout: 5000,
  });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Stops every process a test saw and removes its directories; call from `after`. */
export async function cleanUp(): Promise<void> {
  // Polite first (the supervisor stops its children in order), then by force, by pid.
  for (const child of supervisors) if (child.pid && alive(child.pid)) child.kill('SIGTERM');
  const deadline = Date.now() + 30_000;
  while ([...supervisors].some((child) => alive(child.pid)) && Date.now() < deadline) await sleep(100);
  for (const pid of seenPids) {
    if (alive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}


/**
 * A base port with `count` free ports from it (node1, node2, … of a cluster listen on consecutive
 * ports). Chosen below Linux's ephemeral range (32768+), where the kernel's own picks (freePort,
 * outgoing connections) would collide with base + 1, base + 2.
 */
export async function freePortRun(count: number): Promise<number> {
  const isFree = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (12_000 - count));
    let all = true;
    for (let i = 0; i < count && all; i++) all = await isFree(base + i);
    if (all) return base;
  }
  throw new Error(`no run of ${count} free ports found between 20000 and 32000`);
}
