// A throwaway PostgreSQL server for tests and benchmarks: a fresh data directory under the OS temp
// directory, a free port on 127.0.0.1, removed again by `stop()` — also when the process exits early.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findPgBinaries, type PgBinaries } from './binaries.ts';
import { initDataDir, serverAccount, startServer, stopServer, writeServerSettings, type ServerHandle } from './server.ts';

/** A running throwaway server and how to reach it as its superuser. */
export interface ThrowawayServer {
  port: number;
  superuserPassword: string;
  /** postgres://postgres:…@127.0.0.1:port/postgres */
  superuserUrl: string;
  handle: ServerHandle;
  dir: string;
  stop(): Promise<void>;
}

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const live = new Set<ThrowawayServer>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a test runner exits without calling stop(): immediate shutdown, no orphan.
  process.on('exit', () => {
    for (const server of live) {
      try {
        server.handle.child.kill('SIGQUIT');
      } catch {
        // already gone
      }
      rmSync(server.dir, { recursive: true, force: true });
    }
  });
}

/** Starts a fresh server; `stop()` shuts it down and deletes its files. */
export async function startThrowawayServer(
  options: { settings?: Record<string, string | number | boolean>; bin?: PgBinaries } = {},
): Promise<ThrowawayServer> {
  installExitHook();
  const bin = options.bin ?? findPgBinaries();
  const account = serverAccount('postgres');
  const dir = mkdtempSync(join(tmpdir(), 'parley-pg-'));
  chmodSync(dir, 0o755);
  const dataDir = join(dir, 'data');
  const superuserPassword = randomBytes(18).toString('base64url');
  const port = await freePort();
  initDataDir({ bin, dataDir, account, superuserPassword });
  writeServerSettings(
    dataDir,
    { port, maxConnections: 100, sharedBuffers: '32MB', extra: { fsync: false, synchronous_commit: 'off', full_page_writes: false, ...options.settings } },
    account,
  );
  const handle = await startServer({ bin, dataDir, account, port, logFile: join(dir, 'postgres.log'), superuserPassword });
  const server: ThrowawayServer = {
    port,
    superuserPassword,
    superuserUrl: `postgres://postgres:${encodeURIComponent(superuserPassword)}@127.0.0.1:${port}/postgres`,
    handle,
    dir,
    async stop() {
      live.delete(server);
      await stopServer(handle, { timeoutMs: 10_000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(server);
  return server;
}
