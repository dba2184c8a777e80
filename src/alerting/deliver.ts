// Getting one notice through channels that fail: every attempt has a timeout, a failed attempt is
// retried with exponential backoff and full jitter (AWS's "full jitter": a uniformly random wait
// below the doubled ceiling, so many retrying senders spread out instead of pulsing together),
// and every attempt is reported to the journal. Several channels are tried at once and settle
// independently (Promise.allSettled): a channel that hangs or is down never delays another, which
// is the point of sending a critical alert on two of them.
//
// Randomness, sleeping and the stopwatch are options, so tests can make backoff deterministic.
import type { DeliveryAttempt, Notice } from './types.ts';

/** A channel as delivery sees it: a name and a way to send one notice (throwing on failure). */
export interface Sender {
  name: string;
  /** This channel's own attempt timeout, overriding the delivery default. */
  timeoutMs?: number;
  send(notice: Notice, signal: AbortSignal): Promise<void>;
}

/** Limits of one round of delivery, and the injectable sources of time and chance. */
export interface DeliveryOptions {
  timeoutMs: number;
  /** Retries after the first attempt: at most `retries + 1` attempts per round. */
  retries: number;
  backoffMs: number;
  maxBackoffMs: number;
  /** Uniform in [0, 1); Math.random by default. */
  random?: () => number;
  /** Waits `ms` unless `signal` aborts first (then rejects). */
  sleep?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  /** A monotonic clock in ms, for the journal's `ms`. */
  stopwatch?: () => number;
  /** Told about every attempt; must not throw (a throw is swallowed). */
  journal?: (attempt: DeliveryAttempt) => void;
  /**
   * Stops the round: no further attempt starts and a backoff wait ends. A running attempt is left
   * to finish (its own timeout bounds it), so a send the channel is about to confirm is recorded
   * as delivered rather than cut off and sent again after a restart.
   */
  signal?: AbortSignal;
}

/** How a round on one channel ended. */
export interface DeliveryResult {
  channel: string;
  ok: boolean;
  attempts: number;
  error?: string;
  /** True when the round was stopped by `signal` rather than by running out of retries. */
  cancelled?: boolean;
}

/** One notice for one channel. */
export interface DeliveryJob {
  sender: Sender;
  notice: Notice;
}

/**
 * The wait before retry number `retry` (1 = the first retry): full jitter below
 * min(maxBackoffMs, backoffMs × 2^(retry−1)).
 */
export function backoffDelayMs(retry: number, options: Pick<DeliveryOptions, 'backoffMs' | 'maxBackoffMs'>, random: () => number): number {
  const ceiling = Math.min(options.maxBackoffMs, options.backoffMs * 2 ** Math.min(retry - 1, 52));
  return Math.floor(random() * ceiling);
}

/** Delivers one notice on one channel: attempts with timeouts and backoff until one succeeds. */
export async function deliverWithRetries(sender: Sender, notice: Notice, options: DeliveryOptions): Promise<DeliveryResult> {
  const random = options.random ?? Math.random;
  const sleep = options.sleep ?? sleepMs;
  const stopwatch = options.stopwatch ?? (() => performance.now());
  const timeoutMs = sender.timeoutMs ?? options.timeoutMs;
  let lastError = 'not attempted';
  for (let attempt = 1; attempt <= options.retries + 1; attempt++) {
    if (options.signal?.aborted) return { channel: sender.name, ok: false, attempts: attempt - 1, error: lastError, cancelled: true };
    const started = stopwatch();
    try {
      await withTimeout((signal) => sender.send(notice, signal), timeoutMs);
      report(options, { channel: sender.name, alertId: notice.alert.id, ...keyOf(notice), attempt, ok: true, ms: Math.round(stopwatch() - started) });
      return { channel: sender.name, ok: true, attempts: attempt };
    } catch (error) {
      lastError = messageOf(error);
      report(options, { channel: sender.name, alertId: notice.alert.id, ...keyOf(notice), attempt, ok: false, error: lastError, ms: Math.round(stopwatch() - started) });
    }
    if (attempt > options.retries) break;
    try {
      await sleep(backoffDelayMs(attempt, options, random), options.signal);
    } catch {
      return { channel: sender.name, ok: false, attempts: attempt, error: lastError, cancelled: true };
    }
  }
  return { channel: sender.name, ok: false, attempts: options.retries + 1, error: lastError };
}

/**
 * Delivers every job at once; each settles on its own and is reported to `onResult` as soon as it
 * does (so a fast channel's success is recorded while a slow one still retries).
 */
export async function deliverAll(
  jobs: readonly DeliveryJob[],
  options: DeliveryOptions & { onResult?: (job: DeliveryJob, result: DeliveryResult) => void },
): Promise<DeliveryResult[]> {
  const settled = await Promise.allSettled(
    jobs.map(async (job) => {
      const result = await deliverWithRetries(job.sender, job.notice, options);
      options.onResult?.(job, result);
      return result;
    }),
  );
  return settled.map((outcome, i) =>
    outcome.status === 'fulfilled' ? outcome.value : { channel: jobs[i]!.sender.name, ok: false, attempts: 0, error: messageOf(outcome.reason) },
  );
}

/**
 * Runs `work` with its own abort signal, which fires after `timeoutMs`; the attempt ends then
 * even if `work` ignores its signal (its late result is dropped).
 */
export async function withTimeout(work: (signal: AbortSignal) => Promise<void>, timeoutMs: number): Promise<void> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
  const aborted = new Promise<never>((_, reject) => {
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason as Error), { once: true });
  });
  try {
    // Started inside an async function so a sender that throws synchronously still rejects here.
    const running = (async () => work(controller.signal))();
    await Promise.race([running, aborted]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits `ms`, or rejects as soon as `signal` aborts. */
export function sleepMs(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new Error('cancelled'));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new Error('cancelled'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function keyOf(notice: Notice): { notice?: string } {
  return notice.key === undefined ? {} : { notice: notice.key };
}

function report(options: DeliveryOptions, attempt: DeliveryAttempt): void {
  try {
    options.journal?.(attempt);
  } catch {
    // A broken journal must not stop a page from going out; the shell logs its own failures.
  }
}

/** One line for an error, whatever was thrown. */
export function messageOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0]!.slice(0, 500);
}
