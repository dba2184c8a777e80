// Send → receive latency: open-loop paced HTTP sends (the k-th send is due at t0 + k/rate, whether
// or not earlier ones have been answered, so a slow server cannot slow the load down and hide its
// own latency) and one WebSocket per receiving member. Each body carries the send's due time on
// this process's monotonic clock; latency = arrival on the receiver's socket − due time.
import { randomUUID } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type WebSocket from 'ws';
import type { HttpClient } from './http-client.ts';
import type { BenchConversation } from './population.ts';
import { summarise, type Summary } from './stats.ts';
import { openStream } from './ws-connect.ts';

/** What the open loop measured. */
export interface OpenLoopResult {
  targetRatePerSecond: number;
  windowSeconds: number;
  /** Sends due inside the window that were answered 201. */
  acknowledged: number;
  achievedRatePerSecond: number;
  receiverSockets: number;
  /** Deliveries expected (acknowledged × receivers) and those that arrived. */
  deliveriesExpected: number;
  deliveriesReceived: number;
  /** Send due → frame on the receiver's socket, ms. */
  deliveryMs: Summary;
  /** Send due → HTTP 201, ms. */
  ackMs: Summary;
  errors: Record<string, number>;
  /** Sends not started because `inFlightMax` were already outstanding. */
  skipped: number;
  /** Event-loop delay of the generator itself during the run, ms (its own share of any latency). */
  generatorLoopDelayMs: { p50: number; p99: number; max: number };
}

const marker = 'bench-lat';
// Outstanding sends beyond this are skipped and counted: the generator stays bounded even if the
// server stops answering.
const inFlightMax = 2_000;
const socketOpenTimeoutMs = 15_000;
// The event-loop delay histogram samples on a timer of this period and records whole periods,
// so the period is subtracted from its figures to leave the delay alone.
const loopDelayResolutionMs = 2;

/**
 * The open loop's clock: calls `fire(k, due)` for k = 0 … total − 1 at due = t0 + k × intervalMs,
 * whatever happened to the earlier ones (late ticks fire every overdue k at once, in order), until
 * all have fired or `signal` aborts.
 */
export function paceOpenLoop(options: { t0: number; intervalMs: number; total: number; signal: AbortSignal; fire: (k: number, due: number) => void }): Promise<void> {
  const { t0, intervalMs, total, signal, fire } = options;
  return new Promise<void>((resolve) => {
    let k = 0;
    function tick(): void {
      if (signal.aborted) return resolve();
      const now = performance.now();
      while (k < total && t0 + k * intervalMs <= now) {
        fire(k, t0 + k * intervalMs);
        k++;
      }
      if (k >= total) return resolve();
      setTimeout(tick, Math.max(0, t0 + k * intervalMs - performance.now()));
    }
    tick();
  });
}

/** Measures this process's event-loop delay from now; the returned function stops and reports it, ms. */
export function startLoopDelayMeter(): () => { p50: number; p99: number; max: number } {
  const loopDelay = monitorEventLoopDelay({ resolution: loopDelayResolutionMs });
  loopDelay.enable();
  return () => {
    loopDelay.disable();
    return {
      p50: Math.max(0, loopDelay.percentile(50) / 1e6 - loopDelayResolutionMs),
      p99: Math.max(0, loopDelay.percentile(99) / 1e6 - loopDelayResolutionMs),
      max: Math.max(0, loopDelay.max / 1e6 - loopDelayResolutionMs),
    };
  };
}

/** Runs the paced sends and measures delivery to every other member's socket. */
/**
 * The benchmark message a socket frame carries, if it is one: `marker k due` in the body of a
 * `message` event, with k in [0, total). Undefined for any other frame.
 */
export function benchDelivery(text: string, marker: string, total: number): { k: number; due: number } | undefined {
  if (!text.includes(marker)) return undefined;
  const frame = JSON.parse(text) as { type?: string; message?: { body?: string } };
  if (frame.type !== 'message' || !frame.message?.body?.startsWith(marker)) return undefined;
  const [, kText, dueText] = frame.message.body.split(' ');
  const k = Number(kText);
  const due = Number(dueText);
  return k >= 0 && k < total ? { k, due } : undefined;
}

export async function runOpenLoop(options: {
  client: HttpClient;
  wsBaseUrl: string;
  conversations: readonly BenchConversation[];
  ratePerSecond: number;
  warmupMs: number;
  windowMs: number;
  drainMs: number;
  signal: AbortSignal;
  log: (line: string) => void;
}): Promise<OpenLoopResult> {
  const { client, conversations, signal } = options;
  const intervalMs = 1000 / options.ratePerSecond;
  const total = Math.floor(((options.warmupMs + options.windowMs) / 1000) * options.ratePerSecond);
  const receiversPer = conversations.map((c) => c.receivers.length);
  const delivered = new Uint8Array(total);
  const acked = new Uint8Array(total);
  const deliveryMs: number[] = [];
  const ackMs: number[] = [];
  const errors: Record<string, number> = {};
  let t0 = 0;
  let windowStart = 0;
  let windowEnd = 0;

  const sockets: WebSocket[] = [];
  try {
    for (const conversation of conversations) {
      for (const receiver of conversation.receivers) {
        const ws = await openStream(options.wsBaseUrl, receiver.token, socketOpenTimeoutMs);
        sockets.push(ws);
        ws.on('message', (data) => {
          const arrived = performance.now();
          const delivery = benchDelivery(data.toString(), marker, total);
          if (!delivery) return;
          const { k, due } = delivery;
          delivered[k] = (delivered[k] ?? 0) + 1;
          if (due >= windowStart && due < windowEnd) deliveryMs.push(arrived - due);
        });
      }
    }
    options.log(`latency: ${sockets.length} receiver sockets open; sending ${options.ratePerSecond.toFixed(0)}/s for ${(options.warmupMs + options.windowMs) / 1000} s (${options.warmupMs / 1000} s warm-up)`);

    let inFlight = 0;
    let skipped = 0;

    function fire(k: number, due: number): void {
      if (inFlight >= inFlightMax) {
        skipped++;
        return;
      }
      inFlight++;
      const conversation = conversations[k % conversations.length]!;
      const body = { clientMessageId: randomUUID(), body: `${marker} ${k} ${due.toFixed(3)}` };
      void client
        .request('POST', `/v1/conversations/${conversation.id}/messages`, { token: conversation.sender.token, body })
        .then(
          (answer) => String(answer.status),
          (error: unknown) => `network: ${(error as Error).message.slice(0, 60)}`,
        )
        .then((status) => {
          inFlight--;
          const inWindow = due >= windowStart && due < windowEnd;
          if (status === '201') {
            acked[k] = 1;
            if (inWindow) ackMs.push(performance.now() - due);
          } else if (inWindow) {
            errors[status] = (errors[status] ?? 0) + 1;
          }
        });
    }

    const loopDelay = startLoopDelayMeter();
    t0 = performance.now();
    windowStart = t0 + options.warmupMs;
    windowEnd = windowStart + options.windowMs;
    await paceOpenLoop({ t0, intervalMs, total, signal, fire });
    signal.throwIfAborted();
    // Every request has its own timeout in the client, so this wait is bounded too.
    while (inFlight > 0) await new Promise((r) => setTimeout(r, 20));
    // Let the last deliveries arrive; stop waiting as soon as every acknowledged send has them all.
    const drainUntil = performance.now() + options.drainMs;
    const complete = (): boolean => {
      for (let k = 0; k < total; k++) if (acked[k] && delivered[k]! < receiversPer[k % conversations.length]!) return false;
      return true;
    };
    while (performance.now() < drainUntil && !complete()) await new Promise((r) => setTimeout(r, 50));
    const generatorLoopDelayMs = loopDelay();

    let acknowledged = 0;
    let expected = 0;
    let received = 0;
    for (let k = 0; k < total; k++) {
      const due = t0 + k * intervalMs;
      if (due < windowStart || due >= windowEnd || !acked[k]) continue;
      acknowledged++;
      expected += receiversPer[k % conversations.length]!;
      received += Math.min(delivered[k]!, receiversPer[k % conversations.length]!);
    }
    return {
      targetRatePerSecond: options.ratePerSecond,
      windowSeconds: options.windowMs / 1000,
      acknowledged,
      achievedRatePerSecond: acknowledged / (options.windowMs / 1000),
      receiverSockets: sockets.length,
      deliveriesExpected: expected,
      deliveriesReceived: received,
      deliveryMs: summarise(deliveryMs),
      ackMs: summarise(ackMs),
      errors,
      skipped,
      generatorLoopDelayMs,
    };
  } finally {
    for (const ws of sockets) ws.terminate();
  }
}
