// Throughput: pgbench's single-row insert (the ceiling of the PostgreSQL node) and a closed-loop
// HTTP send generator (N clients, each sends, waits for the 201, sends again) against the app.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Cleanup } from './cleanup.ts';
import type { HttpClient } from './http-client.ts';
import { summarise, type Summary } from './stats.ts';

/** What one pgbench run reported. */
export interface PgbenchResult {
  tps: number;
  transactions: number;
  failed: number;
  latencyAverageMs: number;
  command: string;
  script: string;
}

// pgbench is killed when it overruns its own duration by this much.
const pgbenchGraceMs = 30_000;

/** The custom script: one row shaped like a message into a random one of 1,000 conversations. */
export const pgbenchScript = "\\set cid random(1, 1000)\nINSERT INTO bench_insert (conversation_id, body) VALUES (:cid, 'hello');\n";

/** Runs pgbench's custom single-row insert with `clients` connections for `seconds`. */
export async function runPgbench(options: {
  cleanup: Cleanup;
  pgbench: string;
  port: number;
  password: string;
  database: string;
  clients: number;
  threads: number;
  seconds: number;
  workDir: string;
}): Promise<PgbenchResult> {
  const scriptFile = join(options.workDir, 'insert.sql');
  writeFileSync(scriptFile, pgbenchScript);
  // -M prepared is pgbench's fastest protocol: the strictest baseline for the ratio.
  const args = ['-n', '-M', 'prepared', '-c', String(options.clients), '-j', String(options.threads), '-T', String(options.seconds), '-f', scriptFile, '-h', '127.0.0.1', '-p', String(options.port), '-U', 'postgres', options.database];
  const command = `pgbench ${args.map((a) => (a === scriptFile ? 'insert.sql' : a)).join(' ')}`;
  const child = spawn(options.pgbench, args, { env: { ...process.env, PGPASSWORD: options.password }, stdio: ['ignore', 'pipe', 'pipe'] });
  const release = options.cleanup.add(`pgbench (pid ${child.pid})`, async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.seconds * 1000 + pgbenchGraceMs);
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  clearTimeout(timer);
  await release();
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
  if (code !== 0 || !tps) throw new Error(`${command} failed (exit ${code}): ${out.trim().split('\n').slice(-5).join(' | ')}`);
  return {
    tps: Number(tps[1]),
    transactions: Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? Number.NaN),
    failed: Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0),
    latencyAverageMs: Number(/latency average = ([\d.]+) ms/.exec(out)?.[1] ?? Number.NaN),
    command,
    script: pgbenchScript,
  };
}

/** One sending client of the closed loop: who sends, and where. */
export interface SendTarget {
  token: string;
  conversationId: string;
}

/** What the closed loop measured inside its window. */
export interface ClosedLoopResult {
  clients: number;
  windowSeconds: number;
  sent: number;
  /** Every 201, warm-up and stragglers included (to divide server-side totals by). */
  sentTotal: number;
  ratePerSecond: number;
  latencyMs: Summary;
  errors: Record<string, number>;
}

/**
 * Runs `targets.length` clients in a closed loop for warm-up + window; counts the 201s that
 * complete inside the window. Each send has a fresh clientMessageId.
 */
export async function runClosedLoop(options: {
  client: HttpClient;
  targets: readonly SendTarget[];
  warmupMs: number;
  windowMs: number;
  signal: AbortSignal;
}): Promise<ClosedLoopResult> {
  const { client, targets } = options;
  const start = performance.now();
  const windowStart = start + options.warmupMs;
  const windowEnd = windowStart + options.windowMs;
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let sent = 0;
  let sentTotal = 0;
  let counter = 0;

  async function worker(target: SendTarget): Promise<void> {
    while (!options.signal.aborted) {
      const began = performance.now();
      if (began >= windowEnd) return;
      const path = `/v1/conversations/${target.conversationId}/messages`;
      let status: string;
      try {
        const answer = await client.request('POST', path, { token: target.token, body: { clientMessageId: randomUUID(), body: `bench ${counter++}` } });
        status = String(answer.status);
      } catch (error) {
        status = `network: ${(error as Error).message.slice(0, 60)}`;
      }
      const ended = performance.now();
      if (status === '201') sentTotal++;
      if (ended < windowStart || ended > windowEnd) continue;
      if (status === '201') {
        sent++;
        latencies.push(ended - began);
      } else {
        errors[status] = (errors[status] ?? 0) + 1;
      }
    }
  }
  await Promise.all(targets.map(worker));
  options.signal.throwIfAborted();
  return {
    clients: targets.length,
    windowSeconds: options.windowMs / 1000,
    sent,
    sentTotal,
    ratePerSecond: sent / (options.windowMs / 1000),
    latencyMs: summarise(latencies),
    errors,
  };
}
