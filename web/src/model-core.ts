// What the client knows about my conversations, and how each server event changes it. Pure: no
// I/O and no clock (time comes in as `nowMs`), so the same events always give the same model,
// whichever way they arrived (WebSocket, /v1/sync, an answer to a send) and however often.
import type { Account, ChatEvent, Conversation, ConversationItem, Message } from './types.ts';

/** Loaded history of one conversation: ascending seq, no duplicates. */
export interface Timeline {
  messages: Message[];
  /** Older messages exist on the server before the first one here. */
  hasOlder: boolean;
}

/** Everything the client shows, for one signed-in account. */
export interface Model {
  me: Account;
  conversations: Map<string, ConversationItem>;
  timelines: Map<string, Timeline>;
  /** conversation → account → the highest seq that account has read. */
  reads: Map<string, Map<string, number>>;
  /** conversation → account → until when "is typing" shows (ms). */
  typing: Map<string, Map<string, number>>;
}

/** How long a typing event shows when no further one comes. */
export const typingShowMs = 6000;
/** Messages kept per conversation in memory and in the offline copy beyond what is on screen. */
export const timelineCachedMax = 100;

/** What the shell must do after an event. */
export interface ApplyOutcome {
  /** An event named a conversation not in the list: fetch the list again. */
  refreshList: boolean;
  /** A message arrived past a hole in a loaded timeline: fetch after this seq. */
  gap?: { conversationId: string; afterSeq: number };
}

/** An empty model for `me`. */
export function emptyModel(me: Account): Model {
  return { me, conversations: new Map(), timelines: new Map(), reads: new Map(), typing: new Map() };
}

/** Merges messages into ascending, duplicate-free order (by seq; a later copy replaces). */
export function mergeMessages(existing: readonly Message[], incoming: readonly Message[]): Message[] {
  if (incoming.length === 0) return existing.slice();
  const bySeq = new Map<number, Message>();
  for (const message of existing) bySeq.set(message.seq, message);
  for (const message of incoming) bySeq.set(message.seq, message);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

function raiseRead(model: Model, conversationId: string, accountId: string, seq: number): void {
  let reads = model.reads.get(conversationId);
  if (!reads) model.reads.set(conversationId, (reads = new Map()));
  if ((reads.get(accountId) ?? 0) < seq) reads.set(accountId, seq);
}

function recount(item: ConversationItem): void {
  item.unread = Math.max(0, item.lastSeq - item.lastReadSeq);
}

/** Puts a fresh list from GET /v1/conversations in place, keeping what the list cannot know. */
export function replaceList(model: Model, items: readonly ConversationItem[]): void {
  const next = new Map<string, ConversationItem>();
  for (const item of items) {
    const known = model.conversations.get(item.id);
    const merged: ConversationItem = { ...item };
    // A read or a message may have come in while the list was on its way: never step back.
    if (known) {
      merged.lastReadSeq = Math.max(item.lastReadSeq, known.lastReadSeq);
      if (known.lastSeq > merged.lastSeq) {
        merged.lastSeq = known.lastSeq;
        if (known.lastMessage) merged.lastMessage = known.lastMessage;
      }
    }
    recount(merged);
    next.set(item.id, merged);
    raiseRead(model, item.id, model.me.id, merged.lastReadSeq);
  }
  model.conversations = next;
}

/** Adds or updates one conversation (from a `conversation` event or a create answer). */
export function upsertConversation(model: Model, conversation: Conversation): void {
  const known = model.conversations.get(conversation.id);
  if (known) {
    Object.assign(known, { ...conversation, lastSeq: Math.max(known.lastSeq, conversation.lastSeq) });
    recount(known);
  } else {
    const item: ConversationItem = { ...conversation, lastReadSeq: 0, unread: 0 };
    recount(item);
    model.conversations.set(conversation.id, item);
  }
}

/**
 * Puts the newest page of a conversation (GET …/messages without a bound) in its timeline: merged
 * when it meets what is loaded, else in place of it (what was loaded would leave a hole).
 */
export function addNewestPage(model: Model, conversationId: string, messages: readonly Message[], hasOlder: boolean): void {
  const known = model.timelines.get(conversationId);
  const first = messages[0];
  const knownLast = known?.messages[known.messages.length - 1]?.seq;
  if (!known || !first || knownLast === undefined || first.seq > knownLast + 1) {
    model.timelines.set(conversationId, { messages: messages.slice(), hasOlder: first ? hasOlder : false });
  } else {
    const startsEarlier = known.messages[0]!.seq <= first.seq;
    known.messages = mergeMessages(known.messages, messages);
    if (!startsEarlier) known.hasOlder = hasOlder;
  }
  for (const message of messages) noteMessage(model, message);
}

/** Puts a page of older history (GET …/messages?beforeSeq=) in front of a timeline. */
export function addOlderPage(model: Model, conversationId: string, messages: readonly Message[], hasOlder: boolean): void {
  const timeline = model.timelines.get(conversationId) ?? { messages: [], hasOlder: true };
  timeline.messages = mergeMessages(timeline.messages, messages);
  timeline.hasOlder = hasOlder && messages.length > 0;
  model.timelines.set(conversationId, timeline);
  for (const message of messages) noteMessage(model, message);
}

/** Fills a hole after a timeline's end (GET …/messages?afterSeq=); unloaded timelines stay so. */
export function addNewerPage(model: Model, conversationId: string, messages: readonly Message[]): void {
  const timeline = model.timelines.get(conversationId);
  if (timeline) timeline.messages = mergeMessages(timeline.messages, messages);
  for (const message of messages) noteMessage(model, message);
}

// A message is known: list entry, read positions (a sender has read up to their message), typing.
function noteMessage(model: Model, message: Message): boolean {
  raiseRead(model, message.conversationId, message.senderId, message.seq);
  model.typing.get(message.conversationId)?.delete(message.senderId);
  const item = model.conversations.get(message.conversationId);
  if (!item) return false;
  if (!item.lastMessage || item.lastMessage.seq <= message.seq) item.lastMessage = message;
  if (message.seq > item.lastSeq) item.lastSeq = message.seq;
  // Sending marks the sender's read position up to their message (API.md).
  if (message.senderId === model.me.id && message.seq > item.lastReadSeq) item.lastReadSeq = message.seq;
  recount(item);
  return true;
}

/** Applies one server event. Applying the same event twice changes nothing the second time. */
export function applyEvent(model: Model, event: ChatEvent, nowMs: number): ApplyOutcome {
  const outcome: ApplyOutcome = { refreshList: false };
  switch (event.type) {
    case 'message': {
      const message = event.message;
      const timeline = model.timelines.get(message.conversationId);
      if (timeline) {
        const last = timeline.messages[timeline.messages.length - 1];
        if (last && message.seq > last.seq + 1) outcome.gap = { conversationId: message.conversationId, afterSeq: last.seq };
        timeline.messages = mergeMessages(timeline.messages, [message]);
      }
      if (!noteMessage(model, message)) outcome.refreshList = true;
      break;
    }
    case 'read': {
      raiseRead(model, event.conversationId, event.accountId, event.seq);
      const item = model.conversations.get(event.conversationId);
      if (!item) outcome.refreshList = true;
      else if (event.accountId === model.me.id && event.seq > item.lastReadSeq) {
        item.lastReadSeq = event.seq;
        recount(item);
      }
      break;
    }
    case 'conversation':
      upsertConversation(model, event.conversation);
      break;
    case 'typing': {
      if (event.accountId === model.me.id) break;
      let typing = model.typing.get(event.conversationId);
      if (!typing) model.typing.set(event.conversationId, (typing = new Map()));
      typing.set(event.accountId, nowMs + typingShowMs);
      break;
    }
  }
  return outcome;
}

/** Records that I have read up to `seq` (before the server confirms it). */
export function markReadLocally(model: Model, conversationId: string, seq: number): boolean {
  const item = model.conversations.get(conversationId);
  if (!item || seq <= item.lastReadSeq) return false;
  item.lastReadSeq = seq;
  recount(item);
  raiseRead(model, conversationId, model.me.id, seq);
  return true;
}

/** My conversations, most recently active first (the server's order: last message, then creation). */
export function conversationsNewestFirst(model: Model): ConversationItem[] {
  const activity = (item: ConversationItem) => Date.parse(item.lastMessage?.sentAt ?? item.createdAt) || 0;
  return [...model.conversations.values()].sort((a, b) => activity(b) - activity(a) || compareIds(b.id, a.id));
}

/** Compares opaque numeric-looking ids without losing precision. */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** The name to show for an account of a conversation. */
export function nameOf(conversation: Conversation | undefined, accountId: string): string {
  const member = conversation?.members.find((m) => m.id === accountId);
  return member ? member.displayName || member.username : 'someone';
}

/** A conversation's title as I see it: its title, else the other members' names. */
export function titleOf(conversation: Conversation, me: Account): string {
  if (conversation.title) return conversation.title;
  const others = conversation.members.filter((m) => m.id !== me.id).map((m) => m.displayName || m.username);
  return others.length > 0 ? others.join(', ') : 'Just me';
}

/** Who is typing in a conversation now (names), expired entries left out. */
export function typingNames(model: Model, conversationId: string, nowMs: number): string[] {
  const typing = model.typing.get(conversationId);
  if (!typing) return [];
  const conversation = model.conversations.get(conversationId);
  return [...typing.entries()].filter(([, untilMs]) => untilMs > nowMs).map(([id]) => nameOf(conversation, id));
}

/** The next moment a typing entry expires, or undefined. */
export function nextTypingExpiryMs(model: Model, nowMs: number): number | undefined {
  let next: number | undefined;
  for (const typing of model.typing.values()) for (const untilMs of typing.values()) if (untilMs > nowMs && (next === undefined || untilMs < next)) next = untilMs;
  return next;
}

/**
 * The read receipt to show: my newest message that another member has read, and who has read it.
 * Undefined when none of my messages has been seen yet.
 */
export function seenReceipt(model: Model, conversationId: string): { seq: number; by: string[] } | undefined {
  const timeline = model.timelines.get(conversationId);
  const reads = model.reads.get(conversationId);
  const conversation = model.conversations.get(conversationId);
  if (!timeline || !reads) return undefined;
  const others = [...reads.entries()].filter(([id]) => id !== model.me.id);
  for (let i = timeline.messages.length - 1; i >= 0; i--) {
    const message = timeline.messages[i]!;
    if (message.senderId !== model.me.id) continue;
    const by = others.filter(([, seq]) => seq >= message.seq).map(([id]) => nameOf(conversation, id));
    if (by.length > 0) return { seq: message.seq, by };
  }
  return undefined;
}

/** Keeps only the newest `timelineCachedMax` messages of a timeline (for the offline copy). */
export function trimmedTimeline(timeline: Timeline): Timeline {
  if (timeline.messages.length <= timelineCachedMax) return timeline;
  return { messages: timeline.messages.slice(-timelineCachedMax), hasOlder: true };
}
