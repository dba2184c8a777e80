// The outbox's rules, pure: what is sent next, what an answer means for a queued message, and the
// typed order. The shell (client.ts) keeps the items in IndexedDB and does the sending.

/** A message typed by this account and not yet acknowledged by the server. */
export interface OutboxItem {
  /** Chosen once, when typed, and sent with every attempt: the server stores the message once. */
  clientMessageId: string;
  accountId: string;
  conversationId: string;
  body: string;
  createdAtMs: number;
  /** Typed order: strictly increasing per browser profile. */
  order: number;
  /** `failed`: the server refused it for good (4xx); the person may retry or discard it. */
  state: 'pending' | 'failed';
  error?: string;
}

/** What an answer to a send means for the queued message. */
export type SendVerdict = 'stored' | 'retry' | 'refused' | 'signed-out';

/**
 * Classifies an HTTP status (0: no answer at all). Network errors, timeouts, 408, 425, 429 and
 * every 5xx are worth retrying with the same clientMessageId; 401 means the session ended and the
 * message waits for the next sign-in; any other 4xx is a refusal that retrying will not change.
 */
export function sendVerdict(status: number): SendVerdict {
  if (status >= 200 && status < 300) return 'stored';
  if (status === 401) return 'signed-out';
  if (status === 0 || status === 408 || status === 425 || status === 429 || status >= 500) return 'retry';
  return 'refused';
}

/** The items of one account in typed order. */
export function inTypedOrder(items: readonly OutboxItem[], accountId: string): OutboxItem[] {
  return items.filter((item) => item.accountId === accountId).sort((a, b) => a.order - b.order);
}

/** The next message to send: the oldest pending one. Messages are sent one at a time, in order. */
export function nextToSend(items: readonly OutboxItem[], accountId: string): OutboxItem | undefined {
  return inTypedOrder(items, accountId).find((item) => item.state === 'pending');
}

/** The order of a message typed at `nowMs` after one of order `lastOrder`: always larger. */
export function nextOrder(lastOrder: number, nowMs: number): number {
  return Math.max(Math.floor(nowMs) * 1000, Math.floor(lastOrder) + 1);
}

/** Length as the server counts it (code points), so the composer blocks exactly what it would. */
export function bodyLength(body: string): number {
  let count = 0;
  for (const _ of body) count++;
  return count;
}
