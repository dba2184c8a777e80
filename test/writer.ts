// A black-box writer for failover tests and drills: one account, one conversation, sends in a loop
// through the public API; a failed send is retried with the same clientMessageId (so a send whose
// answer was lost is stored once), and every acknowledged message is remembered with its time.
import { randomUUID } from 'node:crypto';

/** What a writer saw. */
export interface WriterReport {
  /** Each acknowledged message: when the answer came (atMs) and when the attempt that got it began. */
  acked: Array<{ id: string; seq: number; clientMessageId: string; atMs: number; startedMs: number }>;
  /** Each refused or failed attempt: its answer (status 0: no answer within the client's 10 s) and how long it took. */
  failures: Array<{ status: number; code?: string; retryAfter: string | null; atMs: number; tookMs: number }>;
}

async function call(base: string, path: string, init: { method?: string; body?: unknown; token?: string } = {}, timeoutMs = 10_000) {
  const response = await fetch(`${base}${path}`, {
    method: init.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as any) : undefined, retryAfter: response.headers.get('retry-after') };
}

/** Starts a writer; `stop()` ends it and resolves with what it saw. */
export async function startWriter(base: string) {
  const username = `writer${randomUUID().slice(0, 8)}`;
  await call(base, '/v1/accounts', { method: 'POST', body: { username, password: 'long-enough' } });
  const token = (await call(base, '/v1/sessions', { method: 'POST', body: { username, password: 'long-enough' } })).body.token as string;
  const conversation = (await call(base, '/v1/conversations', { method: 'POST', token, body: { kind: 'group', members: [username], title: 'writer' } })).body;
  const report: WriterReport = { acked: [], failures: [] };
  let running = true;
  const loop = (async () => {
    while (running) {
      const clientMessageId = randomUUID();
      // Bounded retries of one message; the same id every time.
      for (let attempt = 0; attempt < 600 && running; attempt++) {
        const startedMs = Date.now();
        try {
          const answer = await call(base, `/v1/conversations/${conversation.id}/messages`, { method: 'POST', token, body: { clientMessageId, body: `w${report.acked.length}` } });
          if (answer.status === 200 || answer.status === 201) {
            const m = answer.body.message;
            report.acked.push({ id: m.id, seq: m.seq, clientMessageId, atMs: Date.now(), startedMs });
            break;
          }
          report.failures.push({ status: answer.status, code: answer.body?.code, retryAfter: answer.retryAfter, atMs: Date.now(), tookMs: Date.now() - startedMs });
        } catch {
          report.failures.push({ status: 0, retryAfter: null, atMs: Date.now(), tookMs: Date.now() - startedMs });
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  })();
  return {
    report,
    /** Resolves once `count` more sends have been acknowledged (bounded by `timeoutMs`). */
    async waitForAcks(count: number, timeoutMs: number): Promise<void> {
      const target = report.acked.length + count;
      const deadline = Date.now() + timeoutMs;
      while (report.acked.length < target) {
        if (Date.now() > deadline) throw new Error(`only ${report.acked.length - (target - count)} of ${count} sends acknowledged within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop(): Promise<WriterReport> {
      running = false;
      await loop;
      return report;
    },
    /** Every stored message of the writer's conversation, ascending seq. */
    async history(): Promise<Array<{ id: string; seq: number; clientMessageId: string }>> {
      const all: Array<{ id: string; seq: number; clientMessageId: string }> = [];
      let after = 0;
      for (let page = 0; page < 1000; page++) {
        const answer = await call(base, `/v1/conversations/${conversation.id}/messages?afterSeq=${after}&limit=200`, { token });
        if (answer.status !== 200) throw new Error(`history answered ${answer.status}`);
        all.push(...answer.body.messages);
        if (!answer.body.hasMore) break;
        after = all[all.length - 1]!.seq;
      }
      return all;
    },
  };
}

/**
 * How long writes were out after a fault at `atMs`: from then to the acknowledgement of the first
 * send begun after it (a send already under way may still be acknowledged by the old primary).
 */
export function gapAround(report: WriterReport, atMs: number): number {
  const after = report.acked.find((a) => a.startedMs > atMs);
  return after ? after.atMs - atMs : Number.NaN;
}
