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
  let row: (MessageRow & { outcome: 'existing' | 'created' | 'not_found' | 'forbidden'; read_moved: boolean }) | undefined;
  try {
    // One round trip: parley.send_message (migrations 2 and 3) does the whole send in one
    // transaction; a retry that finds its message waits for the synchronous quorum too.
    const result = await db.query<MessageRow & { outcome: 'existing' | 'created' | 'not_found' | 'forbidden'; read_moved: boolean }>(
      'SELECT * FROM send_message($1, $2, $3, $4)',
      [input.conversationId, caller.id, clientMessageId, input.body],
      'parley_send_message',
    );
    row = result.rows[0];
  } catch (error) {
    if ((error as { code?: string }).code !== 'PY001') throw error;
    // A concurrent send of the same id into another conversation won the unique key; ours was
    // rolled back whole (no seq consumed) and the answer is the stored one, as a 409.
    const winner = await findByClientId(db, caller.id, clientMessageId);
    if (!winner) throw new ParleyError('conflict', 'A send with this clientMessageId is in progress; retry', { cause: error });
    return { message: sameConversation(winner, input.conversationId), created: false, readMoved: false };
  }
  if (!row) throw new Error('send_message returned no row');
  if (row.outcome === 'not_found') throw new ParleyError('not_found', `No conversation ${input.conversationId}`);
  if (row.outcome === 'forbidden') throw new ParleyError('forbidden', `You are not a member of conversation ${input.conversationId}`);
  return { message: sameConversation(toMessage(row), input.conversationId), created: row.outcome === 'created', readMoved: row.read_moved };
}

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
