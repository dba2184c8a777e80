// Live events between app servers (`parley up --app-servers N`): every row of the sync log is
// announced by the database at commit (migration 4, channel parley_events); each app server
// listens on the primary (data/ follows it through failovers) and delivers what other servers
// stored to its own sockets. What this server stored itself it has delivered already (chat.ts
// publishes at once), so those announcements are skipped. After every re-subscription — a new
// primary, a lost connection — the log is read again from a little before the newest event seen,
// so nothing announced while nobody listened is missed; delivery stays idempotent for clients.
import { randomUUID } from 'node:crypto';
import type { Database, Subscription } from '../data/data.ts';
import type { ChatEvent } from './shapes.ts';
import { hydrate } from './sync.ts';

/** The channel migration 4 announces on. */
export const eventsChannel = 'parley_events';

// Event ids remembered as delivered; and how far back a catch-up reads (ids are taken in
// order, committed nearly in order: a transaction open across this many later ids is not expected).
const seenMax = 20_000;
const catchUpSlack = 1000n;
const catchUpMax = 5000;

interface Announcement {
  i: number;
  c: number;
  k: number;
  m: number | null;
  a: number | null;
  s: number | null;
}

/** A key for an event, the same whether it came from this server or from an announcement. */
export function eventKey(event: ChatEvent): string | undefined {
  switch (event.type) {
    case 'message':
      return `m:${event.message.id}`;
    case 'read':
      return `r:${event.conversationId}:${event.accountId}:${event.seq}`;
    case 'conversation':
      return `c:${event.conversation.id}`;
    default:
      return undefined;
  }
}

/** Bounded insertion-ordered set. */
function boundedSet(max: number) {
  const set = new Set<string>();
  return {
    has: (key: string) => set.has(key),
    add(key: string) {
      set.add(key);
      if (set.size > max) set.delete(set.values().next().value!);
    },
  };
}

/**
 * Starts listening. `deliver` hands an event to this server's sockets; `deliveredHere` says which
 * events this server already delivered itself (by eventKey).
 */
export function startFanout(db: Database, deliver: (conversationId: string, event: ChatEvent) => Promise<void>, deliveredHere: (key: string) => boolean): Subscription {
  const seen = boundedSet(seenMax);
  let newest = 0n;
  let subscriptions = 0;
  // Announcements are handled one after another, so a conversation's events keep their order.
  let queue: Promise<void> = Promise.resolve();

  async function handle(rows: readonly Announcement[]): Promise<void> {
    const fresh = rows.filter((row) => !seen.has(String(row.i)));
    for (const row of fresh) {
      seen.add(String(row.i));
      if (BigInt(row.i) > newest) newest = BigInt(row.i);
    }
    if (fresh.length === 0) return;
    const events = await hydrate(
      db,
      fresh.map((row) => ({ kind: row.k, conversation_id: String(row.c), message_id: row.m === null ? null : String(row.m), account_id: row.a === null ? null : String(row.a), seq: row.s === null ? null : String(row.s) })),
    );
    for (const event of events) {
      const key = eventKey(event);
      if (key !== undefined && deliveredHere(key)) continue;
      const conversationId = event.type === 'message' ? event.message.conversationId : event.type === 'conversation' ? event.conversation.id : event.conversationId;
      await deliver(conversationId, event);
    }
  }

  function enqueue(work: () => Promise<void>): void {
    // Live delivery is best effort: a failure here is caught up by clients through /v1/sync.
    queue = queue.then(work).catch(() => undefined);
  }

  async function catchUp(): Promise<void> {
    const from = newest > catchUpSlack ? newest - catchUpSlack : 0n;
    const rows = await db.query<{ i: string; c: string; k: number; m: string | null; a: string | null; s: string | null }>(
      'SELECT id AS i, conversation_id AS c, kind AS k, message_id AS m, account_id AS a, seq AS s FROM events WHERE id > $1 ORDER BY id LIMIT $2',
      [from.toString(), catchUpMax],
    );
    await handle(rows.rows.map((r) => ({ i: Number(r.i), c: Number(r.c), k: r.k, m: r.m === null ? null : Number(r.m), a: r.a === null ? null : Number(r.a), s: r.s === null ? null : Number(r.s) })));
  }

  return db.listen(
    eventsChannel,
    (payload) => {
      let row: Announcement;
      try {
        row = JSON.parse(payload) as Announcement;
      } catch {
        return;
      }
      enqueue(() => handle([row]));
    },
    () => {
      subscriptions += 1;
      // The first subscription starts from now; later ones read what they may have missed.
      if (subscriptions > 1 && newest > 0n) enqueue(catchUp);
    },
  );
}

/** The channel typing indicators cross app servers on (payloads sent by the app, not a trigger). */
export const typingChannel = 'parley_typing';

/** Typing between app servers: `announce` tells the others, who deliver to their own sockets. */
export interface TypingFanout extends Subscription {
  announce(conversationId: string, accountId: string): Promise<void>;
}

/**
 * Starts passing typing indicators between app servers. Each announces its own on the primary
 * (`pg_notify`, admitted as `typing`) and listens for the others' (following the primary like the
 * events); its own announcements come back to it and are skipped by the server id they carry.
 * Nothing is caught up after a re-subscription: a typing indicator is worthless a moment later.
 */
export function startTypingFanout(db: Database, deliver: (conversationId: string, accountId: string) => Promise<void>): TypingFanout {
  const server = randomUUID();
  const typingDb = db.withPriority('typing');
  const subscription = db.listen(
    typingChannel,
    (payload) => {
      let note: { o?: unknown; c?: unknown; a?: unknown };
      try {
        note = JSON.parse(payload) as typeof note;
      } catch {
        return;
      }
      if (note.o === server || typeof note.c !== 'string' || typeof note.a !== 'string') return;
      void deliver(note.c, note.a);
    },
    () => undefined,
  );
  return {
    async announce(conversationId, accountId) {
      await typingDb.query('SELECT pg_notify($1, $2)', [typingChannel, JSON.stringify({ o: server, c: conversationId, a: accountId })]);
    },
    close: () => subscription.close(),
  };
}
