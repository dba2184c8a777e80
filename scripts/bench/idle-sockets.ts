// Memory of idle authenticated WebSockets on one app server: a fresh app server process, its
// RSS before, then `sockets` sockets held by several client processes (each process is limited
// to `ulimit -Hn` descriptors too), its RSS after they all received their `status` frame and the
// server had time to settle.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { sleep, type Cleanup } from './cleanup.ts';
import { createHttpClient } from './http-client.ts';
import type { BenchUser } from './population.ts';
import { openFds, peakRssBytes, rssBytes } from './procfs.ts';
import { median } from './stats.ts';
import { startAppProcess } from './system.ts';
import type { ClientCommand, ClientReport } from './ws-clients.ts';

/** What the idle-socket run measured. */
export interface IdleSocketsResult {
  requested: number;
  opened: number;
  failed: number;
  failureSamples: string[];
  /** Sockets the server itself counted (parley_websocket_connections). */
  serverCounted: number;
  /** Sockets closed by the server while held (should be 0). */
  dropped: number;
  clientProcesses: number;
  accounts: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  rssSamplesAfterBytes: number[];
  peakRssBytes: number;
  heapUsedBeforeBytes: number;
  heapUsedAfterBytes: number;
  serverFds: number;
  bytesPerSocket: number;
  projectedRssBytes: number;
  projectedSockets: number;
  openSeconds: number;
}

const rssSamples = 5;
const rssSampleIntervalMs = 1_000;
const openConcurrencyPerProcess = 50;
const socketOpenTimeoutMs = 30_000;
// Bound on the whole opening phase, and on how long a client process may live.
const openPhaseMaxMs = 240_000;
const clientHoldMaxMs = 420_000;

function readMetric(text: string, name: string): number {
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
  return match ? Number(match[1]) : Number.NaN;
}

async function sampleRss(pid: number, signal: AbortSignal): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < rssSamples; i++) {
    if (i > 0) await sleep(rssSampleIntervalMs, signal);
    samples.push(rssBytes(pid));
  }
  return samples;
}

/** Runs the measurement; every process it starts is stopped before it returns or throws. */
export async function measureIdleSockets(options: {
  cleanup: Cleanup;
  repoDir: string;
  stateDir: string;
  databaseUrl: string;
  env: Record<string, string>;
  users: readonly BenchUser[];
  sockets: number;
  clientProcesses: number;
  projectedSockets: number;
  settleMs: number;
  signal: AbortSignal;
  log: (line: string) => void;
  onUnexpectedExit: (what: string) => void;
}): Promise<IdleSocketsResult> {
  const { signal, log } = options;
  const app = await startAppProcess({ ...options, name: 'app-idle' });
  const clients: ChildProcess[] = [];
  const http = createHttpClient(app.url, { socketsMax: 16 });
  try {
    // Warm the server the way any running one is: its pool connected, its routes compiled.
    const tokens = options.users.map((u) => u.token);
    await Promise.all(tokens.slice(0, 32).map((token) => http.json('GET', '/v1/me', 200, { token })));
    await sleep(options.settleMs, signal);
    const before = await sampleRss(app.pid, signal);
    const rssBeforeBytes = median(before);
    const heapUsedBeforeBytes = readMetric((await http.request('GET', '/metrics')).text, 'parley_nodejs_heap_size_used_bytes');
    log(`idle sockets: app server pid ${app.pid} RSS before ${(rssBeforeBytes / 2 ** 20).toFixed(1)} MiB; opening ${options.sockets} sockets from ${options.clientProcesses} client processes`);

    const perProcess = Math.ceil(options.sockets / options.clientProcesses);
    // Sockets each client process saw closed by the server after they were open (reported every 2 s).
    const dropped: number[] = new Array(options.clientProcesses).fill(0);
    const started = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: options.clientProcesses }, (_, c) => {
        const count = Math.min(perProcess, options.sockets - c * perProcess);
        const child = spawn(process.execPath, ['--import', 'tsx', join(options.repoDir, 'scripts/bench/ws-clients.ts')], {
          cwd: options.repoDir,
          stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        });
        clients.push(child);
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        options.cleanup.add(`WebSocket client process ${c + 1} (pid ${child.pid})`, async () => {
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGKILL');
            await exited;
          }
        });
        return new Promise<{ open: number; failed: number; errors: string[] }>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`client process ${c + 1} did not finish opening within ${openPhaseMaxMs} ms`)), openPhaseMaxMs);
          let lastOpen = 0;
          child.on('message', (message: ClientReport) => {
            if (message.type === 'progress') {
              lastOpen = message.open;
              dropped[c] = message.dropped;
            } else if (message.type === 'opened') {
              clearTimeout(timer);
              resolve(message);
            }
          });
          child.once('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`client process ${c + 1} exited (code ${code}) after opening ${lastOpen} sockets`));
          });
          const command: ClientCommand = {
            type: 'open',
            wsBaseUrl: app.url.replace(/^http/, 'ws'),
            tokens,
            tokenOffset: c * perProcess,
            count,
            concurrency: openConcurrencyPerProcess,
            openTimeoutMs: socketOpenTimeoutMs,
            holdMaxMs: clientHoldMaxMs,
          };
          child.send(command);
        });
      }),
    );
    const openSeconds = (Date.now() - started) / 1000;
    const opened = outcomes.reduce((sum, o) => sum + o.open, 0);
    const failed = outcomes.reduce((sum, o) => sum + o.failed, 0);
    const failureSamples = [...new Set(outcomes.flatMap((o) => o.errors))].slice(0, 5);
    log(`idle sockets: ${opened} open, ${failed} failed in ${openSeconds.toFixed(1)} s; settling ${options.settleMs / 1000} s`);
    if (opened === 0) throw new Error(`No socket could be opened: ${failureSamples.join('; ')}`);

    await sleep(options.settleMs, signal);
    const after = await sampleRss(app.pid, signal);
    const rssAfterBytes = median(after);
    const metrics = (await http.request('GET', '/metrics')).text;
    const serverCounted = readMetric(metrics, 'parley_websocket_connections');
    const heapUsedAfterBytes = readMetric(metrics, 'parley_nodejs_heap_size_used_bytes');
    const serverFds = openFds(app.pid);
    // One more progress report from every client, so drops during the samples are counted.
    await sleep(2_500, signal);
    const droppedCount = dropped.reduce((sum, d) => sum + d, 0);
    const bytesPerSocket = (rssAfterBytes - rssBeforeBytes) / opened;
    const result: IdleSocketsResult = {
      requested: options.sockets,
      opened,
      failed,
      failureSamples,
      serverCounted,
      dropped: droppedCount,
      clientProcesses: options.clientProcesses,
      accounts: tokens.length,
      rssBeforeBytes,
      rssAfterBytes,
      rssSamplesAfterBytes: after,
      peakRssBytes: peakRssBytes(app.pid),
      heapUsedBeforeBytes,
      heapUsedAfterBytes,
      serverFds,
      bytesPerSocket,
      projectedRssBytes: rssBeforeBytes + bytesPerSocket * options.projectedSockets,
      projectedSockets: options.projectedSockets,
      openSeconds,
    };
    log(`idle sockets: RSS after ${(rssAfterBytes / 2 ** 20).toFixed(1)} MiB (server counts ${serverCounted} sockets, ${serverFds} fds); ${(bytesPerSocket / 1024).toFixed(1)} KiB per socket`);
    return result;
  } finally {
    http.close();
    for (const child of clients) {
      if (child.connected) child.send({ type: 'close' } satisfies ClientCommand);
    }
    await Promise.all(
      clients.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const timer = setTimeout(() => {
              child.kill('SIGKILL');
            }, 10_000);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    await app.stop();
  }
}
