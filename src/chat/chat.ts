// chat/: accounts, sessions, conversations, messages, receipts, sync and live fan-out. Talks to
// PostgreSQL through data/ only and knows nothing of HTTP: api/ calls this façade.
import { isConnectionLost, type Database, type Priority } from '../data/data.ts';
import { isParleyError } from '../errors/errors.ts';
import { createAccount, createSession, deleteSession, grantOperator, lookUpSession, type Caller } from './accounts.ts';
import { createConversation, getConversation, listConversations, memberIds, parseConversationId } from './conversations.ts';
import { createHub, type Hub, type Listener } from './hub.ts';
import { listMessages, markRead, sendMessage } from './messages.ts';
import type { ChatEvent, ConversationView, MessageView } from './shapes.ts';
import { eventKey, startFanout, startTypingFanout } from './fanout.ts';
import { syncEvents } from './sync.ts';
import { createSendTurns } from './turns.ts';

export type { Caller } from './accounts.ts';
export type { Hub, Listener } from './hub.ts';
export type { AccountView, ChatEvent, ConversationListItem, ConversationView, MessageView } from './shapes.ts';
export { historyPageDefault, historyPageMax, messageBodyMax } from './messages.ts';
export { syncPageDefault, syncPageMax } from './sync.ts';
export { groupMembersMax } from './conversations.ts';
export { hashPassword, verifyPassword } from './passwords.ts';
export { decodeCursor, encodeCursor } from './cursor.ts';
export { grantOperator } from './accounts.ts';

/** Options of the chat service. */
export interface ChatOptions {
  sessionTtlHours: number;
  /** Live delivery; one per app server. */
  hub?: Hub;
  /**
   * A send whose connection was lost mid-way (its primary stopped: a failover or switchover) is
   * sent again, with the same clientMessageId, until this long after it began: sends are
   * idempotent, so the client sees a pause rather than an error. 0: never.
   */
  resendWithinMs?: number;
  /**
   * Several app servers share the cluster: deliver what the others store to this one's sockets
   * too (chat/fanout.ts, through the primary's LISTEN/NOTIFY).
   */
  fanout?: boolean;
  /**
   * How long a send may wait for its conversation's turn on this app server (chat/turns.ts) before
   * it is answered 503 overloaded: the time it would otherwise wait on the conversation's lock in
   * PostgreSQL (data.queryTimeoutMs). Default 5 s.
   */
  turnWaitMs?: number;
  /**
   * How long this app server trusts a session it has looked up before it looks again (0: never
   * caches). api/ passes data.readMaxLagMs: a sign-out may already take that long to reach the
   * standbys that answer session lookups, so the cache promises nothing weaker. A sign-out on this
   * server takes effect here at once.
   */
  sessionCacheMs?: number;
}

// Sessions kept by one app server at most (the oldest go first).
const sessionCacheMax = 100_000;

// Sends of one conversation that hold a database connection at once, per app server: one inside the
// conversation's lock, one ready behind it (chat/turns.ts).
const sendsPerConversation = 2;
// Sends that may wait for one conversation's turn; more are shed at once.
const turnWaitingMax = 500;

// Pause between a send lost with its connection and its resend (the routed database then waits
// for the primary by itself).
const resendStepMs = 100;

// Members never change after a conversation is created, so fan-out can cache them.
const memberCacheMax = 10_000;
const deliveredHereMax = 20_000;

/** The chat service that api/ calls: every operation takes the signed-in caller. */
export function createChat(db: Database, options: ChatOptions) {
  const hub = options.hub ?? createHub();
  const memberCache = new Map<string, string[]>();
  // Events this server delivered itself, so their announcements from the database are skipped.
  const deliveredHere = new Set<string>();
  // Token → the caller it signs in, and until when this server trusts that without asking again:
  // one database request less for nearly every HTTP request, and sign-in keeps working through a
  // short database outage (DESIGN.md invariant 9).
  const sessionCache = new Map<string, { caller: Caller; untilMs: number }>();
  const sessionCacheMs = options.sessionCacheMs ?? 0;
  const turns = createSendTurns({ perConversation: sendsPerConversation, waitMaxMs: options.turnWaitMs ?? 5000, waitingMax: turnWaitingMax });

  /** Members of a conversation, cached; a miss reads them on `on` (its class: typing reads as typing). */
  async function membersFor(conversationId: string, on: Database = db): Promise<string[]> {
    const cached = memberCache.get(conversationId);
    if (cached) return cached;
    const ids = await memberIds(on, conversationId);
    if (memberCache.size >= memberCacheMax) memberCache.delete(memberCache.keys().next().value!);
    memberCache.set(conversationId, ids);
    return ids;
  }

  async function publish(conversationId: string, event: ChatEvent): Promise<void> {
    const key = options.fanout ? eventKey(event) : undefined;
    if (key !== undefined) {
      deliveredHere.add(key);
      if (deliveredHere.size > deliveredHereMax) deliveredHere.delete(deliveredHere.values().next().value!);
    }
    try {
      hub.publish(event, await membersFor(conversationId));
    } catch {
      // Live delivery is best effort; the event is in the log and reaches everyone through sync.
    }
  }

  const fanout = options.fanout
    ? startFanout(
        db,
        async (conversationId, event) => {
          try {
            hub.publish(event, await membersFor(conversationId));
          } catch {
            // As above: best effort.
          }
        },
        (key) => deliveredHere.has(key),
      )
    : undefined;
  // Typing is live only: passed to the other app servers through the primary, never stored.
  const typingFanout = options.fanout
    ? startTypingFanout(db, async (conversationId, accountId) => {
        try {
          const members = await membersFor(conversationId, db.withPriority('typing'));
          hub.publish({ type: 'typing', conversationId, accountId }, members.filter((id) => id !== accountId));
        } catch {
          // As above: best effort.
        }
      })
    : undefined;

  return {
    hub,
    register: (input: { username: string; password: string; displayName?: string | undefined }) => createAccount(db, input),
    login: (input: { username: string; password: string }) => createSession(db, input, { sessionTtlHours: options.sessionTtlHours }),
    logout: (token: string) => {
      sessionCache.delete(token);
      return deleteSession(db, token);
    },
    /**
     * Sessions are read from a standby when one serves reads, so a primary in trouble does not stop
     * every request at sign-in; a token the standby does not know yet (a sign-in a moment ago) is
     * looked up on the primary before it is refused. A sign-out may take up to the read pool's lag
     * bound (data.readMaxLagMs) to reach the standbys. The lookup is admitted as the request it
     * serves (`priority`, default `read`): under overload a send's lookup is not shed as a read.
     * A session found is trusted for `sessionCacheMs` without asking again (the same bound as a
     * sign-out's on the standbys; a sign-out through this server ends it here at once).
     */
    async authenticate(token: string, lookup: { priority?: Priority } = {}): Promise<Caller> {
      const cached = sessionCache.get(token);
      if (cached && cached.untilMs > Date.now()) return cached.caller;
      if (cached) sessionCache.delete(token);
      const priority = lookup.priority ?? 'read';
      const primary = db.withPriority(priority);
      const reads = db.reads().withPriority(priority);
      let found: Awaited<ReturnType<typeof lookUpSession>>;
      if (reads === primary) found = await lookUpSession(primary, token);
      else {
        try {
          found = await lookUpSession(reads, token);
        } catch (error) {
          if (!isParleyError(error) || error.code !== 'unauthorized') throw error;
          found = await lookUpSession(primary, token);
        }
      }
      if (sessionCacheMs > 0) {
        if (sessionCache.size >= sessionCacheMax) sessionCache.delete(sessionCache.keys().next().value!);
        // Never past the session's own expiry.
        sessionCache.set(token, { caller: found.caller, untilMs: Math.min(Date.now() + sessionCacheMs, found.expiresAtMs) });
      }
      return found.caller;
    },
    grantOperator: (username: string) => grantOperator(db, username),
    parseConversationId,

    async createConversation(caller: Caller, input: { kind: 'direct' | 'group'; members: string[]; title?: string | undefined }) {
      const result = await createConversation(db, caller, input);
      db.wrote(caller.id);
      if (result.created) {
        memberCache.set(result.conversation.id, result.conversation.members.map((m) => m.id));
        await publish(result.conversation.id, { type: 'conversation', conversation: result.conversation });
      }
      return result;
    },
    getConversation: (caller: Caller, id: string): Promise<ConversationView> => getConversation(db.reads(caller.id), caller, id),
    listConversations: (caller: Caller) => listConversations(db.reads(caller.id), caller),

    async send(caller: Caller, input: { conversationId: string; clientMessageId: string; body: string }): Promise<{ message: MessageView; created: boolean }> {
      const deadline = Date.now() + (options.resendWithinMs ?? 0);
      let resent = false;
      let result: Awaited<ReturnType<typeof sendMessage>>;
      for (;;) {
        try {
          result = await turns.run(input.conversationId, () => sendMessage(db, caller, input));
          break;
        } catch (error) {
          if (!isConnectionLost(error) || Date.now() >= deadline) throw error;
          resent = true;
          await new Promise((resolve) => setTimeout(resolve, resendStepMs));
        }
      }
      db.wrote(caller.id);
      // A lost first attempt may have stored the message without anyone hearing of it: announce
      // it (clients apply events idempotently).
      if (result.created || resent) await publish(input.conversationId, { type: 'message', message: result.message });
      if (result.readMoved) {
        await publish(input.conversationId, { type: 'read', conversationId: input.conversationId, accountId: caller.id, seq: result.message.seq });
      }
      return { message: result.message, created: result.created };
    },
    history: (caller: Caller, input: { conversationId: string; afterSeq?: number | undefined; beforeSeq?: number | undefined; limit?: number | undefined }) =>
      listMessages(db.reads(caller.id), caller, input),

    async markRead(caller: Caller, input: { conversationId: string; seq: number }): Promise<void> {
      const moved = await markRead(db, caller, input);
      db.wrote(caller.id);
      if (moved) await publish(input.conversationId, { type: 'read', conversationId: input.conversationId, accountId: caller.id, seq: input.seq });
    },

    /**
     * Typing is live only: checked for membership, never stored. It is the lowest class of work:
     * under overload it is shed first — also when its members are cached and it needs no database,
     * since its fan-out costs the CPU that sends are waiting for.
     */
    async typing(caller: Caller, conversationId: string): Promise<void> {
      const typingDb = db.withPriority('typing');
      typingDb.shedIfOverloaded();
      const members = await membersFor(conversationId, typingDb);
      if (!members.includes(caller.id)) {
        await getConversation(typingDb, caller, conversationId); // throws the right 404/403
      }
      hub.publish({ type: 'typing', conversationId, accountId: caller.id }, members.filter((id) => id !== caller.id));
      // Members connected to other app servers hear it through them: a NOTIFY on the primary, as the
      // lowest class. Best effort — shed under overload, lost while there is no primary — and not
      // awaited: the sender is not told, and the socket's next frame (a send) does not wait behind
      // it through a failover. The indicator is worthless a moment later.
      void typingFanout?.announce(conversationId, caller.id).catch(() => undefined);
    },

    sync: (caller: Caller, input: { cursor?: string | undefined; limit?: number | undefined }) => syncEvents(db.reads(caller.id), caller, input),

    subscribe: (accountId: string, listener: Listener) => hub.subscribe(accountId, listener),

    /** Sends waiting for their conversation's turn, and shed for want of one (for /metrics). */
    sendTurns: () => turns.stats(),

    /** Stops listening to the other app servers. */
    async close(): Promise<void> {
      await fanout?.close();
      await typingFanout?.close();
    },
  };
}

/** The chat service type. */
export type Chat = ReturnType<typeof createChat>;
