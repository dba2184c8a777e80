// The public shapes of API.md, as plain types, and the mappers from database rows. Routes never
// send a raw row: everything leaves through these functions.

/** An account as others see it. */
export interface AccountView {
  id: string;
  username: string;
  displayName: string;
}

/** A conversation as its members see it. */
export interface ConversationView {
  id: string;
  kind: 'direct' | 'group';
  title: string | null;
  members: AccountView[];
  lastSeq: number;
  createdAt: string;
}

/** One stored message. */
export interface MessageView {
  id: string;
  conversationId: string;
  seq: number;
  senderId: string;
  clientMessageId: string;
  body: string;
  sentAt: string;
}

/** A conversation in the caller's list, with their read state. */
export interface ConversationListItem extends ConversationView {
  lastReadSeq: number;
  unread: number;
  lastMessage?: MessageView;
}

/** Server events, the same on the WebSocket and in /v1/sync. */
export type ChatEvent =
  | { type: 'message'; message: MessageView }
  | { type: 'read'; conversationId: string; accountId: string; seq: number }
  | { type: 'conversation'; conversation: ConversationView }
  | { type: 'typing'; conversationId: string; accountId: string };

/** Row shape of `messages`. */
export interface MessageRow {
  id: string;
  conversation_id: string;
  seq: string;
  sender_id: string;
  client_message_id: string;
  body: string;
  sent_at: Date;
}

/** Maps a messages row to its public shape. */
export function toMessage(row: MessageRow): MessageView {
  return {
    id: String(row.id),
    conversationId: String(row.conversation_id),
    seq: Number(row.seq),
    senderId: String(row.sender_id),
    clientMessageId: row.client_message_id,
    body: row.body,
    sentAt: row.sent_at.toISOString(),
  };
}

/** Columns to select for `toMessage`, with a table alias. */
export function messageColumns(alias: string): string {
  return ['id', 'conversation_id', 'seq', 'sender_id', 'client_message_id', 'body', 'sent_at'].map((c) => `${alias}.${c}`).join(', ');
}
