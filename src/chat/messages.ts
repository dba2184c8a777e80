// Sending (exactly once, gap-free seq), history pages, and read receipts.
import type { Database } from '../data/data.ts';
import { ParleyError } from '../errors/errors.ts';
import type { Caller } from './accounts.ts';
import { checkAccess, eventKind } from './conversations.ts';
import { messageColumns, toMessage, type MessageRow, type MessageView } from './shapes.ts';

/** Longest message body, in characters (code points). */
export const messageBodyMax = 4000;
/** Largest and default history page. */
export const historyPageMax = 200;
export const historyPageDefault = 50;

/**
 * Stores a message once per (sender, clientMessageId), forever.
 *
 * Seq: a transaction-scoped advisory lock on the conversation serialises senders *before* the
 * transaction gets an xid, so within a conversation both seq and xid rise together — /v1/sync,
 * which orders by xid, then delivers every conversation in seq order. The counter row update and
 * the insert commit together, so a rolled-back send leaves no gap.
 *
 * A retry (same clientMessageId) returns the stored message with `created: false`; the same id
 * in another conversation is a 409, never a second message.
 */
export async function sendMessage(
  db: Database,
  caller: Caller,
  input: { conversationId: string; clientMessageId: string; body: string },
): Promise<{ message: MessageView; created: boolean; readMoved: boolean }> {
  const clientMessageId = input.clientMessageId.toLowerCase();
  const existing = await findByClientId(db, caller.id, clientMessageId);
  if (existing) return { message: sameConversation(existing, input.conversationId), created: false, readMoved: false };
  await checkAccess(db, input.conversationId, caller.id);

  try {
    const stored = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [input.conversationId]);
      const again = await tx.query<MessageRow>(
        `SELECT ${messageColumns('m')} FROM messages m WHERE m.sender_id = $1 AND m.client_message_id = $2`,
        [caller.id, clientMessageId],
      );
      if (again.rows[0]) return { row: again.rows[0], created: false, readMoved: false };
      const counter = await tx.query<{ last_seq: string }>(
        'UPDATE conversations SET last_seq = last_seq + 1, last_message_at = now() WHERE id = $1 RETURNING last_seq',
        [input.conversationId],
      );
      const seq = counter.rows[0]!.last_seq;
      const inserted = await tx.query<MessageRow>(
        `INSERT INTO messages AS m (conversation_id, seq, sender_id, client_message_id, body)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (sender_id, client_message_id) DO NOTHING
         RETURNING ${messageColumns('m')}`,
        [input.conversationId, seq, caller.id, clientMessageId, input.body],
      );
      const row = inserted.rows[0];
      // A concurrent send of the same id into another conversation won the unique key: ours
      // must not consume a seq, so roll back and answer with the stored one.
      if (!row) throw new DuplicateSend();
      await tx.query('INSERT INTO events (conversation_id, kind, message_id) VALUES ($1, $2, $3)', [
        input.conversationId,
        eventKind.message,
        row.id,
      ]);
      // Sending implies having read the conversation up to one's own message. When that passes
      // other people's messages, they get a read receipt like any other ("seen").
      const read = await tx.query<{ before: string }>(
        `WITH old AS (SELECT last_read_seq FROM members WHERE conversation_id = $1 AND account_id = $2 FOR UPDATE)
         UPDATE members m SET last_read_seq = GREATEST(m.last_read_seq, $3) FROM old
          WHERE m.conversation_id = $1 AND m.account_id = $2 RETURNING old.last_read_seq AS before`,
        [input.conversationId, caller.id, seq],
      );
      const readMoved = Number(read.rows[0]?.before ?? seq) < Number(seq) - 1;
      if (readMoved) {
        await tx.query('INSERT INTO events (conversation_id, kind, account_id, seq) VALUES ($1, $2, $3, $4)', [
          input.conversationId,
          eventKind.read,
          caller.id,
          seq,
        ]);
      }
      return { row, created: true, readMoved };
    });
    return { message: sameConversation(toMessage(stored.row), input.conversationId), created: stored.created, readMoved: stored.readMoved };
  } catch (error) {
    if (!(error instanceof DuplicateSend)) throw error;
    const winner = await findByClientId(db, caller.id, clientMessageId);
    if (!winner) throw new ParleyError('conflict', 'A send with this clientMessageId is in progress; retry', { cause: error });
    return { message: sameConversation(winner, input.conversationId), created: false, readMoved: false };
  }
}

class DuplicateSend extends Error {}

async function findByClientId(db: Database, senderId: string, clientMessageId: string): Promise<MessageView | undefined> {
  const result = await db.query<MessageRow>(
    `SELECT ${messageColumns('m')} FROM messages m WHERE m.sender_id = $1 AND m.client_message_id = $2`,
    [senderId, clientMessageId],
  );
  return result.rows[0] ? toMessage(result.rows[0]) : undefined;
}

function sameConversation(message: MessageView, conversationId: string): MessageView {
  if (message.conversationId !== conversationId) {
    throw new ParleyError(
      'conflict',
      `clientMessageId ${message.clientMessageId} was already used for a message in conversation ${message.conversationId}`,
    );
  }
  return message;
}

/**
 * A page of history in ascending seq. With `afterSeq` the page starts just after it (hasMore:
 * newer exist); otherwise it ends just before `beforeSeq` or at the newest (hasMore: older exist).
 */
export async function listMessages(
  db: Database,
  caller: Caller,
  input: { conversationId: string; afterSeq?: number | undefined; beforeSeq?: number | undefined; limit?: number | undefined },
): Promise<{ messages: MessageView[]; hasMore: boolean }> {
  await checkAccess(db, input.conversationId, caller.id);
  const limit = Math.min(input.limit ?? historyPageDefault, historyPageMax);
  const before = input.beforeSeq ?? Number.MAX_SAFE_INTEGER;
  if (input.afterSeq !== undefined) {
    const result = await db.query<MessageRow>(
      `SELECT ${messageColumns('m')} FROM messages m
        WHERE m.conversation_id = $1 AND m.seq > $2 AND m.seq < $3 ORDER BY m.seq ASC LIMIT $4`,
      [input.conversationId, input.afterSeq, before, limit + 1],
    );
    const rows = result.rows.slice(0, limit);
    return { messages: rows.map(toMessage), hasMore: result.rows.length > limit };
  }
  const result = await db.query<MessageRow>(
    `SELECT ${messageColumns('m')} FROM messages m
      WHERE m.conversation_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3`,
    [input.conversationId, before, limit + 1],
  );
  const rows = result.rows.slice(0, limit).reverse();
  return { messages: rows.map(toMessage), hasMore: result.rows.length > limit };
}

/** Moves the caller's read position forward to `seq` (never backwards); true when it moved. */
export async function markRead(db: Database, caller: Caller, input: { conversationId: string; seq: number }): Promise<boolean> {
  const access = await checkAccess(db, input.conversationId, caller.id);
  if (input.seq > access.lastSeq) {
    throw new ParleyError('validation_failed', `seq ${input.seq} is past the last message (${access.lastSeq}) of conversation ${input.conversationId}`);
  }
  if (input.seq <= access.lastReadSeq) return false;
  return db.transaction(async (tx) => {
    const moved = await tx.query(
      'UPDATE members SET last_read_seq = $3 WHERE conversation_id = $1 AND account_id = $2 AND last_read_seq < $3',
      [input.conversationId, caller.id, input.seq],
    );
    if (moved.rowCount === 0) return false;
    await tx.query('INSERT INTO events (conversation_id, kind, account_id, seq) VALUES ($1, $2, $3, $4)', [
      input.conversationId,
      eventKind.read,
      caller.id,
      input.seq,
    ]);
    return true;
  });
}
