// The drill's users: real accounts talking through the public HTTP API of the app servers, as the
// web client would. Users are paired in group conversations (two senders per conversation, so
// seq order under concurrency is checked too); each sends at its own pace and, like the client's
// outbox, sends a refused message again with the same clientMessageId — after the Retry-After the
// server asked for — until it is acknowledged. Every acknowledgement and every refusal is kept with
// its time, for the checker and the report.
import { randomUUID } from 'node:crypto';
import type { Acknowledged, Stored } from './checker-core.ts';

/** A refused or failed attempt: status 0 is no answer (network, or the client's timeout). */
export interface Refusal {
  atMs: number;
  status: number;
  code: string | undefined;
  tookMs: number;
}

export interface LoadReport {
  acknowledged: Array<Acknowledged & { atMs: number; tookMs: number }>;
  refusals: Refusal[];
}

export interface Load {
  report: LoadReport;
  /** Milliseconds each user waits after an acknowledged send (0: as fast as answers come). */
  setPause(ms: number): void;
  /** Acknowledged sends after `sinceMs`. */
  ackedSince(sinceMs: number): number;
  /** Stops sending; resolves once every user's send under way is answered (or has timed out). */
  stop(): Promise<void>;
  /** Every conversation's whole history, read through the API at the end. */
  histories(): Promise<Map<string, Stored[]>>;
}

const requestTimeoutMs = 10_000;
const password = 'drill-password-1';

async function call(base: () => string, path: string, init: { method?: string; body?: unknown; token?: string } = {}): Promise<{ status: number; body: any; retryAfter: string | null }> {
  const response = await fetch(`${base()}${path}`, {
    method: init.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: AbortSignal.timeout(requestTimeoutMs),
  });
  const text = await response.text();
  let body: any;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return { status: response.status, body, retryAfter: response.headers.get('retry-after') };
}

/**
 * A call that must succeed: a 503 or 429 (the cluster settling after a fault, a rate limit) or no
 * answer is tried again, for up to 30 s; any other refusal is an error naming what failed.
 */
async function must(what: string, attempt: () => Promise<{ status: number; body: any; retryAfter: string | null }>): Promise<any> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    let answer: { status: number; body: any; retryAfter: string | null };
    try {
      answer = await attempt();
    } catch (error) {
      answer = { status: 0, body: { detail: (error as Error).message }, retryAfter: null };
    }
    if (answer.status >= 200 && answer.status < 300) return answer.body;
    const retriable = answer.status === 0 || answer.status === 503 || answer.status === 429;
    if (!retriable || Date.now() > deadline) throw new Error(`drill: ${what} answered ${answer.status} ${answer.body?.code ?? ''} ${answer.body?.detail ?? ''}`.trim());
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/**
 * Creates `users` accounts and their conversations, then starts them sending. `urls` are the app
 * servers; users are spread over them (user i talks to `urls[i % n]`), as behind a load balancer.
 */
export async function startLoad(options: { urls: readonly string[]; users: number; pauseMs: number }): Promise<Load> {
  const run = randomUUID().slice(0, 6);
  const people: Array<{ base: () => string; token: string; id: string; conversationId: string }> = [];
  for (let i = 0; i < options.users; i++) {
    const url = options.urls[i % options.urls.length]!;
    const base = () => url;
    const username = `drill${run}u${i}`;
    await must(`sign-up of ${username}`, () => call(base, '/v1/accounts', { method: 'POST', body: { username, password } }));
    const session = await must(`sign-in of ${username}`, () => call(base, '/v1/sessions', { method: 'POST', body: { username, password } }));
    people.push({ base, token: session.token as string, id: String(session.account.id), conversationId: '' });
  }
  for (let i = 0; i < people.length; i += 2) {
    const members = people.slice(i, i + 2);
    const usernames = members.map((_, k) => `drill${run}u${i + k}`);
    const conversation = await must('a conversation', () => call(members[0]!.base, '/v1/conversations', { method: 'POST', token: members[0]!.token, body: { kind: 'group', title: `drill ${run} ${i / 2}`, members: usernames } }));
    for (const member of members) member.conversationId = String(conversation.id);
  }

  const report: LoadReport = { acknowledged: [], refusals: [] };
  let pauseMs = options.pauseMs;
  let running = true;
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  async function user(person: (typeof people)[number], index: number): Promise<void> {
    let n = 0;
    while (running) {
      const clientMessageId = randomUUID();
      // The same message until it is acknowledged, as the outbox does; the drill's stop ends it.
      while (running) {
        const started = Date.now();
        let answer: { status: number; body: any; retryAfter: string | null };
        try {
          answer = await call(person.base, `/v1/conversations/${person.conversationId}/messages`, { method: 'POST', token: person.token, body: { clientMessageId, body: `drill u${index} m${n}` } });
        } catch {
          answer = { status: 0, body: undefined, retryAfter: null };
        }
        const now = Date.now();
        if (answer.status === 200 || answer.status === 201) {
          const message = answer.body.message;
          report.acknowledged.push({ conversationId: person.conversationId, clientMessageId, messageId: String(message.id), seq: Number(message.seq), atMs: now, tookMs: now - started });
          n += 1;
          break;
        }
        report.refusals.push({ atMs: now, status: answer.status, code: answer.body?.code, tookMs: now - started });
        const retryAfterS = Number(answer.retryAfter);
        await sleep(Number.isFinite(retryAfterS) && retryAfterS > 0 ? Math.min(retryAfterS * 1000, 5000) : 250);
      }
      if (pauseMs > 0) await sleep(pauseMs);
    }
  }
  const loops = people.map((person, index) => user(person, index));

  return {
    report,
    setPause(ms) {
      pauseMs = ms;
    },
    ackedSince: (sinceMs) => report.acknowledged.filter((a) => a.atMs > sinceMs).length,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
    async histories() {
      const histories = new Map<string, Stored[]>();
      for (const person of people) {
        if (histories.has(person.conversationId)) continue;
        const messages: Stored[] = [];
        let after = 0;
        for (;;) {
          const page = await must('a history page', () => call(person.base, `/v1/conversations/${person.conversationId}/messages?afterSeq=${after}&limit=200`, { token: person.token }));
          for (const m of page.messages as any[]) messages.push({ id: String(m.id), seq: Number(m.seq), senderId: String(m.senderId), clientMessageId: String(m.clientMessageId) });
          if (!page.hasMore || page.messages.length === 0) break;
          after = Number(page.messages[page.messages.length - 1].seq);
        }
        histories.set(person.conversationId, messages);
      }
      return histories;
    },
  };
}
