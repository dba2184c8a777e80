// The public shapes of API.md as the web client sees them. Ids are opaque strings.

/** An account as others see it. */
export interface Account {
  id: string;
  username: string;
  displayName: string;
}

/** One stored message. */
export interface Message {
  id: string;
  conversationId: string;
  seq: number;
  senderId: string;
  clientMessageId: string;
  body: string;
  sentAt: string;
}

/** A conversation as its members see it. */
export interface Conversation {
  id: string;
  kind: 'direct' | 'group';
  title: string | null;
  members: Account[];
  lastSeq: number;
  createdAt: string;
}

/** A conversation in my list, with my read state. */
export interface ConversationItem extends Conversation {
  lastReadSeq: number;
  unread: number;
  lastMessage?: Message;
}

/** Events of the WebSocket and of /v1/sync. */
export type ChatEvent =
  | { type: 'message'; message: Message }
  | { type: 'read'; conversationId: string; accountId: string; seq: number }
  | { type: 'conversation'; conversation: Conversation }
  | { type: 'typing'; conversationId: string; accountId: string };

/** Every frame the server sends on /v1/stream. */
export type ServerFrame =
  | ChatEvent
  | { type: 'ack'; clientMessageId: string; message: Message }
  | { type: 'error'; clientMessageId?: string; code: string; detail: string }
  | { type: 'status'; state: 'ok' | 'degraded'; detail: string };

/** A signed-in session, kept in localStorage. */
export interface Session {
  token: string;
  account: Account;
}

/** The longest message body, in code points (API.md: 1–4000 chars). */
export const messageBodyMax = 4000;
