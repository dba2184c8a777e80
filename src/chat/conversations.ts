// Conversations and the one access check every conversation route goes through.
import type { Database, Queryable } from '../data/data.ts';
import { ParleyError } from '../errors/errors.ts';
import { accountsByUsername, type Caller } from './accounts.ts';
import { messageColumns, toMessage, type AccountView, type ConversationListItem, type ConversationView, type MessageRow } from './shapes.ts';

/** Most members a group may have; most conversations listed at once. */
export const groupMembersMax = 256;
export const conversationListMax = 1000;

/** Event kinds in the `events` table. */
export const eventKind = { message: 1, read: 2, conversation: 3 } as const;

interface ConversationRow {
  id: string;
  kind: 'direct' | 'group';
  title: string | null;
  last_seq: string;
  created_at: Date;
}

/** Parses a conversation id from a URL; anything that is not one is simply not found. */
export function parseConversationId(raw: string): string {
  if (!/^[1-9][0-9]{0,17}$/.test(raw)) throw new ParleyError('not_found', `No conversation "${raw.slice(0, 40)}"`);
  return raw;
}

/**
 * The one access check: 404 when the conversation does not exist, 403 when the caller is not a
 * member. Returns the caller's read position. Every read or write of a conversation calls this.
 */
export async function checkAccess(db: Queryable, conversationId: string, accountId: string): Promise<{ lastReadSeq: number; lastSeq: number }> {
  const result = await db.query<{ member: boolean; last_read_seq: string | null; last_seq: string }>(
    `SELECT m.account_id IS NOT NULL AS member, m.last_read_seq, c.last_seq
       FROM conversations c LEFT JOIN members m ON m.conversation_id = c.id AND m.account_id = $2
      WHERE c.id = $1`,
    [conversationId, accountId],
  );
  const row = result.rows[0];
  if (!row) throw new ParleyError('not_found', `No conversation ${conversationId}`);
  if (!row.member) throw new ParleyError('forbidden', `You are not a member of conversation ${conversationId}`);
  return { lastReadSeq: Number(row.last_read_seq), lastSeq: Number(row.last_seq) };
}

async function membersOf(db: Queryable, conversationIds: readonly string[]): Promise<Map<string, AccountView[]>> {
  const result = await db.query<{ conversation_id: string; id: string; username: string; display_name: string }>(
    `SELECT m.conversation_id, a.id, a.username, a.display_name
       FROM members m JOIN accounts a ON a.id = m.account_id
      WHERE m.conversation_id = ANY($1::bigint[])
      ORDER BY m.conversation_id, a.username`,
    [conversationIds],
  );
  const out = new Map<string, AccountView[]>();
  for (const row of result.rows) {
    const key = String(row.conversation_id);
    const list = out.get(key) ?? [];
    list.push({ id: String(row.id), username: row.username, displayName: row.display_name });
    out.set(key, list);
  }
  return out;
}

function toConversation(row: ConversationRow, members: AccountView[]): ConversationView {
  return {
    id: String(row.id),
    kind: row.kind,
    title: row.title,
    members,
    lastSeq: Number(row.last_seq),
    createdAt: row.created_at.toISOString(),
  };
}

/** Loads conversations by id with their members (no access check: callers have done it). */
export async function loadConversations(db: Queryable, ids: readonly string[]): Promise<Map<string, ConversationView>> {
  if (ids.length === 0) return new Map();
  const rows = await db.query<ConversationRow>(
    'SELECT id, kind, title, last_seq, created_at FROM conversations WHERE id = ANY($1::bigint[])',
    [ids],
  );
  const members = await membersOf(db, ids);
  return new Map(rows.rows.map((row) => [String(row.id), toConversation(row, members.get(String(row.id)) ?? [])]));
}

/** One conversation the caller belongs to. */
export async function getConversation(db: Database, caller: Caller, conversationId: string): Promise<ConversationView> {
  await checkAccess(db, conversationId, caller.id);
  const found = await loadConversations(db, [conversationId]);
  const conversation = found.get(conversationId);
  if (!conversation) throw new ParleyError('not_found', `No conversation ${conversationId}`);
  return conversation;
}

/**
 * Creates a direct or group conversation; the caller is always a member. A direct conversation
 * between the same two accounts exists once: asking again returns it with `created: false`.
 */
export async function createConversation(
  db: Database,
  caller: Caller,
  input: { kind: 'direct' | 'group'; members: string[]; title?: string | undefined },
): Promise<{ conversation: ConversationView; created: boolean }> {
  const others = [...new Set(input.members)].filter((u) => u !== caller.username);
  if (input.kind === 'direct') {
    if (others.length !== 1) {
      throw new ParleyError('validation_failed', `A direct conversation has exactly one other member (got ${others.length})`);
    }
    if (input.title !== undefined) throw new ParleyError('validation_failed', 'A direct conversation has no title');
  } else if (others.length + 1 > groupMembersMax) {
    throw new ParleyError('validation_failed', `A group has at most ${groupMembersMax} members (got ${others.length + 1})`);
  }
  const accounts = await accountsByUsername(db, others);
  const memberIds = [caller.id, ...accounts.map((a) => a.id)];
  const directKey =
    input.kind === 'direct'
      ? memberIds
          .map(BigInt)
          .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
          .join(':')
      : null;

  const { id, created } = await db.transaction(async (tx) => {
    const inserted = await tx.query<{ id: string }>(
      `INSERT INTO conversations (kind, title, direct_key, created_by) VALUES ($1, $2, $3, $4)
       ON CONFLICT (direct_key) DO NOTHING RETURNING id`,
      [input.kind, input.title ?? null, directKey, caller.id],
    );
    const row = inserted.rows[0];
    if (!row) {
      const existing = await tx.query<{ id: string }>('SELECT id FROM conversations WHERE direct_key = $1', [directKey]);
      return { id: String(existing.rows[0]!.id), created: false };
    }
    await tx.query(
      'INSERT INTO members (conversation_id, account_id) SELECT $1, unnest($2::bigint[])',
      [row.id, memberIds],
    );
    await tx.query('INSERT INTO events (conversation_id, kind) VALUES ($1, $2)', [row.id, eventKind.conversation]);
    return { id: String(row.id), created: true };
  });
  const conversation = (await loadConversations(db, [id])).get(id)!;
  return { conversation, created };
}

/** The caller's conversations, most recently active first, with read state and last message. */
export async function listConversations(db: Database, caller: Caller): Promise<ConversationListItem[]> {
  const result = await db.query<ConversationRow & { last_read_seq: string } & Partial<{ [K in keyof MessageRow as `m_${K}`]: MessageRow[K] | null }>>(
    `SELECT c.id, c.kind, c.title, c.last_seq, c.created_at, m.last_read_seq,
            lm.id AS m_id, lm.conversation_id AS m_conversation_id, lm.seq AS m_seq, lm.sender_id AS m_sender_id,
            lm.client_message_id AS m_client_message_id, lm.body AS m_body, lm.sent_at AS m_sent_at
       FROM members m
       JOIN conversations c ON c.id = m.conversation_id
       LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq
      WHERE m.account_id = $1
      ORDER BY COALESCE(c.last_message_at, c.created_at) DESC, c.id DESC
      LIMIT ${conversationListMax}`,
    [caller.id],
  );
  const members = await membersOf(db, result.rows.map((r) => String(r.id)));
  return result.rows.map((row) => {
    const base = toConversation(row, members.get(String(row.id)) ?? []);
    const lastReadSeq = Number(row.last_read_seq);
    const item: ConversationListItem = { ...base, lastReadSeq, unread: Math.max(0, base.lastSeq - lastReadSeq) };
    if (row.m_id) {
      item.lastMessage = toMessage({
        id: row.m_id,
        conversation_id: row.m_conversation_id!,
        seq: row.m_seq!,
        sender_id: row.m_sender_id!,
        client_message_id: row.m_client_message_id!,
        body: row.m_body!,
        sent_at: row.m_sent_at!,
      });
    }
    return item;
  });
}

/** Member ids of a conversation, for fan-out. */
export async function memberIds(db: Queryable, conversationId: string): Promise<string[]> {
  const result = await db.query<{ account_id: string }>('SELECT account_id FROM members WHERE conversation_id = $1', [conversationId]);
  return result.rows.map((r) => String(r.account_id));
}

/** Re-exported for messages.ts. */
export { messageColumns };
