// Overload (DESIGN.md invariant 9, issue 6): an open loop offering a multiple of the measured maximum
// send rate as a mix of sends, reads and typing indicators, against one app server. Each request is
// due at t0 + k / rate whatever happened to the earlier ones, so an overloaded server cannot slow the
// load down; every latency is counted from the due time, on this process's monotonic clock. Sends and
// reads go over HTTP (answers: 2xx, or 503 problem+json with a code and Retry-After); typing frames go
// over each sender's WebSocket, where the server answers only a refusal (an `error` frame). The
// receivers' sockets measure send → receive for the sends that were accepted.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type WebSocket from 'ws';
import type { HttpClient } from './http-client.ts';
import { benchDelivery, paceOpenLoop, startLoopDelayMeter } from './latency.ts';
import type { BenchConversation } from './population.ts';
import { summarise, type Summary } from './stats.ts';
import { openStream } from './ws-connect.ts';

/** The kinds of request offered, in the server's priority order. */
export const loadClasses = ['send', 'read', 'typing'] as const;
export type LoadClass = (typeof loadClasses)[number];

/**
 * One cycle of the offered mix: a quarter sends, half reads, a quarter typing. The sends alone are
 * then offered at half the maximum — the rate of the latency target — so the run asks whether they
 * keep that latency with one and a half times the maximum of other work on top.
 */
export const overloadMix: readonly LoadClass[] = ['send', 'read', 'typing', 'read'];

/** What happened to one class of request due inside the window. */
export interface ClassOutcome {
  offered: number;
  /** 2xx (typing: not refused). */
  accepted: number;
  /** 503 with code `overloaded` (typing: an `overloaded` error frame). */
  shed: number;
  /** 503 with code `storage_unavailable`. */
  unavailable: number;
  /** Anything else, by status (or frame code, or network error). */
  otherErrors: Record<string, number>;
  /** Due → answer, accepted requests (HTTP classes only). */
  acceptedMs: Summary;
  /** Due → answer, shed requests (HTTP classes only). */
  shedMs: Summary;
  /** 503 answers without a Retry-After header. */
  missingRetryAfter: number;
}

/** What the overload run measured. */
export interface OverloadResult {
  maxRatePerSecond: number;
  factor: number;
  offeredRatePerSecond: number;
  windowSeconds: number;
  classes: Record<LoadClass, ClassOutcome>;
  /** Due → `message` frame on a receiver's socket, for accepted sends. */
  sendDeliveryMs: Summary;
  deliveriesExpected: number;
  deliveriesReceived: number;
  /** Typing frames the receivers got, divided by receivers per conversation (a cross-check of `accepted`). */
  typingSeen: number;
  /** The longest time from due to any HTTP answer (typing frames have no answer to time). */
  longestResponseMs: number;
  /** 5xx answers other than 503, by status: there should be none. */
  serverErrors: Record<string, number>;
  /** Requests not started because `inFlightMax` were outstanding. */
  skipped: number;
  sockets: number;
  /** What the server counted over the whole run (warm-up included), from /metrics. */
  server: { shed: Record<LoadClass, Record<string, number>>; admitted: Record<LoadClass, number> };
  generatorLoopDelayMs: { p50: number; p99: number; max: number };
}

const marker = 'bench-ovl';
/** The generator's own bound on outstanding HTTP requests (more are skipped and counted). */
export const overloadInFlightMax = 4_000;
const inFlightMax = overloadInFlightMax;
const socketOpenTimeoutMs = 15_000;

function emptyOutcome(): { offered: number; accepted: number; shed: number; unavailable: number; otherErrors: Record<string, number>; acceptedMs: number[]; shedMs: number[]; missingRetryAfter: number } {
  return { offered: 0, accepted: 0, shed: 0, unavailable: 0, otherErrors: {}, acceptedMs: [], shedMs: [], missingRetryAfter: 0 };
}

/** The admission counters of /metrics, by class (and reason). */
async function readAdmission(client: HttpClient): Promise<OverloadResult['server']> {
  const text = (await client.request('GET', '/metrics')).text;
  const shed: Record<LoadClass, Record<string, number>> = { send: {}, read: {}, typing: {} };
  const admitted: Record<LoadClass, number> = { send: 0, read: 0, typing: 0 };
  for (const line of text.split('\n')) {
    const s = /^parley_admission_shed_total\{class="(\w+)",reason="([\w-]+)"\} (\d+)/.exec(line);
    if (s && s[1]! in shed) shed[s[1] as LoadClass][s[2]!] = Number(s[3]);
    const a = /^parley_admission_admitted_total\{class="(\w+)"\} (\d+)/.exec(line);
    if (a && a[1]! in admitted) admitted[a[1] as LoadClass] = Number(a[2]);
  }
  return { shed, admitted };
}

function minus(after: OverloadResult['server'], before: OverloadResult['server']): OverloadResult['server'] {
  const shed: Record<LoadClass, Record<string, number>> = { send: {}, read: {}, typing: {} };
  const admitted: Record<LoadClass, number> = { send: 0, read: 0, typing: 0 };
  for (const c of loadClasses) {
    admitted[c] = after.admitted[c] - before.admitted[c];
    for (const [reason, n] of Object.entries(after.shed[c])) shed[c][reason] = n - (before.shed[c][reason] ?? 0);
  }
  return { shed, admitted };
}

/** Runs the overload mix at `factor` × `maxRatePerSecond` for warm-up + window. */
export async function runOverload(options: {
  client: HttpClient;
  wsBaseUrl: string;
  conversations: readonly BenchConversation[];
  maxRatePerSecond: number;
  factor: number;
  warmupMs: number;
  windowMs: number;
  drainMs: number;
  signal: AbortSignal;
  log: (line: string) => void;
}): Promise<OverloadResult> {
  const { client, conversations, signal } = options;
  const rate = options.maxRatePerSecond * options.factor;
  const intervalMs = 1000 / rate;
  const total = Math.floor(((options.warmupMs + options.windowMs) / 1000) * rate);
  const outcomes: Record<LoadClass, ReturnType<typeof emptyOutcome>> = { send: emptyOutcome(), read: emptyOutcome(), typing: emptyOutcome() };
  const serverErrors: Record<string, number> = {};
  const acceptedSend = new Uint8Array(total);
  const delivered = new Uint8Array(total);
  const deliveryMs: number[] = [];
  let typingSeenFrames = 0;
  let longestResponseMs = 0;
  let t0 = 0;
  let windowStart = Number.POSITIVE_INFINITY;
  let windowEnd = Number.POSITIVE_INFINITY;
  const inWindow = (at: number): boolean => at >= windowStart && at < windowEnd;

  const sockets: WebSocket[] = [];
  const senderSockets: WebSocket[] = [];
  try {
    // The senders' sockets carry typing frames and hear refusals; the receivers' hear messages and typing.
    for (const conversation of conversations) {
      const ws = await openStream(options.wsBaseUrl, conversation.sender.token, socketOpenTimeoutMs);
      sockets.push(ws);
      senderSockets.push(ws);
      ws.on('message', (data) => {
        const text = data.toString();
        if (!text.startsWith('{"type":"error"')) return;
        const arrived = performance.now();
        const frame = JSON.parse(text) as { code?: string };
        if (!inWindow(arrived)) return;
        if (frame.code === 'overloaded') outcomes.typing.shed++;
        else outcomes.typing.otherErrors[`frame ${frame.code}`] = (outcomes.typing.otherErrors[`frame ${frame.code}`] ?? 0) + 1;
      });
      for (const receiver of conversation.receivers) {
        const rs = await openStream(options.wsBaseUrl, receiver.token, socketOpenTimeoutMs);
        sockets.push(rs);
        rs.on('message', (data) => {
          const arrived = performance.now();
          const text = data.toString();
          if (text.startsWith('{"type":"typing"')) {
            if (inWindow(arrived)) typingSeenFrames++;
            return;
          }
          const delivery = benchDelivery(text, marker, total);
          if (!delivery) return;
          const { k, due } = delivery;
          delivered[k] = (delivered[k] ?? 0) + 1;
          if (inWindow(due)) deliveryMs.push(arrived - due);
        });
      }
    }
    const before = await readAdmission(client);
    options.log(
      `overload: ${sockets.length} sockets open; offering ${rate.toFixed(0)} requests/s (${options.factor} × ${options.maxRatePerSecond.toFixed(0)}) for ${(options.warmupMs + options.windowMs) / 1000} s: ` +
        `${overloadMix.filter((c) => c === 'send').length}/${overloadMix.length} sends, ${overloadMix.filter((c) => c === 'read').length}/${overloadMix.length} reads, ${overloadMix.filter((c) => c === 'typing').length}/${overloadMix.length} typing`,
    );

    let inFlight = 0;
    let skipped = 0;
    function fire(k: number, due: number): void {
      const kind = overloadMix[k % overloadMix.length]!;
      const index = Math.floor(k / overloadMix.length) % conversations.length;
      const conversation = conversations[index]!;
      const counted = inWindow(due);
      const outcome = outcomes[kind];
      if (counted) outcome.offered++;
      if (kind === 'typing') {
        const ws = senderSockets[index]!;
        if (ws.readyState !== ws.OPEN) {
          if (counted) outcome.otherErrors['socket closed'] = (outcome.otherErrors['socket closed'] ?? 0) + 1;
          return;
        }
        ws.send(`{"type":"typing","conversationId":"${conversation.id}"}`);
        return;
      }
      if (inFlight >= inFlightMax) {
        if (counted) skipped++;
        return;
      }
      inFlight++;
      const request =
        kind === 'send'
          ? client.request('POST', `/v1/conversations/${conversation.id}/messages`, { token: conversation.sender.token, body: { clientMessageId: randomUUID(), body: `${marker} ${k} ${due.toFixed(3)}` } })
          : client.request('GET', `/v1/conversations/${conversation.id}/messages?limit=50`, { token: conversation.receivers[k % conversation.receivers.length]!.token });
      void request
        .then(
          (answer) => ({ status: answer.status, code: answer.status >= 400 ? codeOf(answer.text) : undefined, retryAfter: answer.retryAfter }),
          (error: unknown) => ({ status: 0, code: `network: ${(error as Error).message.slice(0, 60)}`, retryAfter: undefined }),
        )
        .then(({ status, code, retryAfter }) => {
          inFlight--;
          const tookMs = performance.now() - due;
          if (!counted) return;
          longestResponseMs = Math.max(longestResponseMs, tookMs);
          if (status >= 200 && status < 300) {
            outcome.accepted++;
            outcome.acceptedMs.push(tookMs);
            if (kind === 'send') acceptedSend[k] = 1;
            return;
          }
          if (status === 503 && retryAfter === undefined) outcome.missingRetryAfter++;
          if (status === 503 && code === 'overloaded') {
            outcome.shed++;
            outcome.shedMs.push(tookMs);
          } else if (status === 503 && code === 'storage_unavailable') outcome.unavailable++;
          else {
            const key = status === 0 ? code! : `${status}${code ? ` ${code}` : ''}`;
            outcome.otherErrors[key] = (outcome.otherErrors[key] ?? 0) + 1;
          }
          if (status >= 500 && status !== 503) serverErrors[String(status)] = (serverErrors[String(status)] ?? 0) + 1;
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
    const receiversPer = conversations.map((c) => c.receivers.length);
    const sendIndex = (k: number): number => Math.floor(k / overloadMix.length) % conversations.length;
    const drainUntil = performance.now() + options.drainMs;
    const complete = (): boolean => {
      for (let k = 0; k < total; k++) if (acceptedSend[k] && delivered[k]! < receiversPer[sendIndex(k)]!) return false;
      return true;
    };
    while (performance.now() < drainUntil && !complete()) await new Promise((r) => setTimeout(r, 50));
    const generatorLoopDelayMs = loopDelay();
    const server = minus(await readAdmission(client), before);

    let expected = 0;
    let received = 0;
    for (let k = 0; k < total; k++) {
      if (!acceptedSend[k] || !inWindow(t0 + k * intervalMs)) continue;
      expected += receiversPer[sendIndex(k)]!;
      received += Math.min(delivered[k]!, receiversPer[sendIndex(k)]!);
    }
    const typing = outcomes.typing;
    const typingRefused = typing.shed + Object.values(typing.otherErrors).reduce((a, b) => a + b, 0);
    typing.accepted = Math.max(0, typing.offered - typingRefused);
    const receiversEach = receiversPer[0] ?? 1;

    const classes = {} as Record<LoadClass, ClassOutcome>;
    for (const c of loadClasses) {
      const o = outcomes[c];
      classes[c] = { offered: o.offered, accepted: o.accepted, shed: o.shed, unavailable: o.unavailable, otherErrors: o.otherErrors, acceptedMs: summarise(o.acceptedMs), shedMs: summarise(o.shedMs), missingRetryAfter: o.missingRetryAfter };
    }
    return {
      maxRatePerSecond: options.maxRatePerSecond,
      factor: options.factor,
      offeredRatePerSecond: rate,
      windowSeconds: options.windowMs / 1000,
      classes,
      sendDeliveryMs: summarise(deliveryMs),
      deliveriesExpected: expected,
      deliveriesReceived: received,
      typingSeen: typingSeenFrames / receiversEach,
      longestResponseMs,
      serverErrors,
      skipped,
      sockets: sockets.length,
      server,
      generatorLoopDelayMs,
    };
  } finally {
    for (const ws of sockets) ws.terminate();
  }
}

function codeOf(text: string): string | undefined {
  try {
    const code = (JSON.parse(text) as { code?: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}
