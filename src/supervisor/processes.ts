// Small process helpers shared by the supervisor, `down` and `status`: bounded waits, port checks,
// and the check that PostgreSQL's OS account can reach its data directory.
import type { ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { ParleyError } from '../errors/errors.ts';
import type { OsAccount } from '../postgres/postgres.ts';
import { isAlive } from './state.ts';

/** Thrown by `bounded` when the supervisor was asked to stop while it waited. */
export class StopRequested extends Error {
  constructor() {
    super('stop requested');
    this.name = 'StopRequested';
  }
}

/** Waits for `promise` at most `timeoutMs` (then throws `onTimeout()`), or until `signal` aborts. */
export async function bounded<T>(promise: Promise<T>, timeoutMs: number, onTimeout: () => Error, signal?: AbortSignal): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(onTimeout()), timeoutMs);
      }),
      new Promise<never>((_, reject) => {
        if (!signal) return;
        if (signal.aborted) reject(new StopRequested());
        onAbort = () => reject(new StopRequested());
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `pid` is gone or `timeoutMs` passes; true when it is gone. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(100);
  }
  return true;
}

/** Stops a child we spawned: SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
export async function stopChild(child: ChildProcess, exited: Promise<unknown>, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  for (const [signal, waitMs] of [['SIGTERM', graceMs], ['SIGKILL', 5000]] as const) {
    try {
      child.kill(signal);
    } catch {
      return;
    }
    const gone = await bounded(exited.then(() => true), waitMs, () => new Error('timeout')).catch(() => false);
    if (gone) return;
  }
}

/** Throws a one-line error naming the port when nothing may listen on host:port. */
export async function assertPortFree(host: string, port: number, what: string, hint: string): Promise<void> {
  const server = createServer();
  const result = await bounded(
    new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      server.once('error', (error: NodeJS.ErrnoException) => resolve(error));
      server.listen({ host, port, exclusive: true }, () => resolve(undefined));
    }),
    5000,
    () => new ParleyError('conflict', `could not check whether port ${port} on ${host} is free (${what}): no answer in 5 s`),
  );
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!result) return;
  if (result.code === 'EADDRINUSE') {
    throw new ParleyError('conflict', `port ${port} on ${host} is already in use, needed for ${what}; ${hint}`);
  }
  throw new ParleyError('conflict', `cannot listen on ${host}:${port} for ${what} (${result.code ?? result.message}); ${hint}`);
}

/**
 * Throws when PostgreSQL's OS account could not walk down to `path` (as root, the server runs as
 * another account, and a state directory under /root is a classic way to make initdb fail).
 */
export function assertReachable(path: string, account: OsAccount | undefined): void {
  if (!account) return;
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    let mode: number;
    let uid: number;
    let gid: number;
    try {
      ({ mode, uid, gid } = statSync(dir));
    } catch {
      if (dir === dirname(dir)) return;
      continue;
    }
    const canEnter = uid === account.uid ? (mode & 0o100) !== 0 : gid === account.gid ? (mode & 0o010) !== 0 : (mode & 0o001) !== 0;
    if (!canEnter) {
      throw new ParleyError(
        'config_invalid',
        `PostgreSQL runs as the OS account "${account.name}", which cannot enter ${dir} (mode ${(mode & 0o777).toString(8)}); choose a --dir it can reach, or chmod o+x ${dir}`,
      );
    }
    if (dir === dirname(dir)) return;
  }
}
