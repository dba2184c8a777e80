// /v1/sync: everything since a cursor for one account, oldest first, in the WebSocket's shapes.
//
// The log is the `events` table ordered by (xid, id). Only rows whose transaction id is below the
// oldest transaction still running (pg_snapshot_xmin) are returned: those are final, so a cursor
// never moves past a transaction that commits later with a smaller position. A cursor of any age
// works because the log is never truncated.
import type { Database } from '../data/data.ts';
import type { Caller } from './accounts.ts';
import { eventKind, loadConversations } from './conversations.ts';
import { decodeCursor, encodeCursor, type Cursor } from './cursor.ts';
import { messageColumns, toMessage, type ChatEvent, type MessageRow } from './shapes.ts';

/** Largest and default sync page. */
export const syncPageMax = 500;
export const syncPageDefault = 100;

/** One row of the sync log (only the fields hydrate reads are needed). */
export interface EventRow {
  xid: string;
  id: string;
  horizon: string;
  kind: number;
  conversation_id: string;
  message_id: string | null;
  account_id: string | null;
  seq: string | null;
}

/** Events after `cursor` for the caller; no cursor → no events and a cursor for "now". */
export async function syncEvents(
  db: Database,
  caller: Caller,
  input: { cursor?: string | undefined; limit?: number | undefined },
): Promise<{ events: ChatEvent[]; cursor: string; hasMore: boolean }> {
  const limit = Math.min(input.limit ?? syncPageDefault, syncPageMax);
  if (input.cursor === undefined) {
    const now = await db.query<{ horizon: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon');
    return { events: [], cursor: encodeCursor({ xid: BigInt(now.rows[0]!.horizon), id: 0n }), hasMore: false };
  }
  const from = decodeCursor(input.cursor);
  const result = await db.query<EventRow>(
    `WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon)
     SELECT e.xid::text, e.id, h.horizon::text AS horizon, e.kind, e.conversation_id, e.message_id, e.account_id, e.seq
       FROM h, members mb
       JOIN events e ON e.conversation_id = mb.conversation_id
      WHERE mb.account_id = $1
        AND (e.xid, e.id) > ($2::text::xid8, $3::bigint)
        AND e.xid < h.horizon
      ORDER BY e.xid, e.id
      LIMIT $4`,
    [caller.id, from.xid.toString(), from.id.toString(), limit + 1],
  );
  const rows = result.rows.slice(0, limit);
  const hasMore = result.rows.length > limit;
  let horizon: bigint;
  if (result.rows[0]) {
    horizon = BigInt(result.rows[0].horizon);
  } else {
    const now = await db.query<{ horizon: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon');
    horizon = BigInt(now.rows[0]!.horizon);
  }
  const events = await hydrate(db, rows);
  const last = rows[rows.length - 1];
  // With nothing more to send, jump to the horizon: nothing below it can still appear.
  let next: Cursor = last ? { xid: BigInt(last.xid), id: BigInt(last.id) } : from;
  if (!hasMore && horizon > next.xid) next = { xid: horizon, id: 0n };
  return { events, cursor: encodeCursor(next), hasMore };
}

/** The log's rows as the WebSocket's events, in order; rows whose subject is gone are left out. */
export async function hydrate(db: Database, rows: readonly Pick<EventRow, 'kind' | 'conversation_id' | 'message_id' | 'account_id' | 'seq'>[]): Promise<ChatEvent[]> {
  const messageIds = rows.filter((r) => r.kind === eventKind.message).map((r) => String(r.message_id));
  const conversationIds = [...new Set(rows.filter((r) => r.kind === eventKind.conversation).map((r) => String(r.conversation_id)))];
  const messages = new Map<string, ReturnType<typeof toMessage>>();
  if (messageIds.length > 0) {
    const found = await db.query<MessageRow>(`SELECT ${messageColumns('m')} FROM messages m WHERE m.id = ANY($1::bigint[])`, [messageIds]);
    for (const row of found.rows) messages.set(String(row.id), toMessage(row));
  }
  const conversations = await loadConversations(db, conversationIds);
  const events: ChatEvent[] = [];
  for (const row of rows) {
    if (row.kind === eventKind.message) {
      const message = messages.get(String(row.message_id));
      if (message) events.push({ type: 'message', message });
    } else if (row.kind === eventKind.read) {
      events.push({ type: 'read', conversationId: String(row.conversation_id), accountId: String(row.account_id), seq: Number(row.seq) });
    } else if (row.kind === eventKind.conversation) {
      const conversation = conversations.get(String(row.conversation_id));
      if (conversation) events.push({ type: 'conversation', conversation });
    }
  }
  return events;
}
