// The client's engine: the session, the live socket, catching up with /v1/sync, the outbox and the
// offline copy. The rules live in the pure *-core.ts files; this shell does the I/O in straight
// lines and tells the view (subscribe) when anything changed.
import { call, uuid, type ApiResult } from './api.ts';
import { backoffDelayMs } from './backoff-core.ts';
import {
  addNewerPage,
  addNewestPage,
  addOlderPage,
  applyEvent,
  emptyModel,
  markReadLocally,
  nextTypingExpiryMs,
  replaceList,
  trimmedTimeline,
  upsertConversation,
  type Model,
  type Timeline,
} from './model-core.ts';
import { bodyLength, inTypedOrder, nextOrder, nextToSend, sendVerdict, type OutboxItem } from './outbox-core.ts';
import * as storage from './storage.ts';
import { messageBodyMax, type Account, type ChatEvent, type Conversation, type ConversationItem, type Message, type ServerFrame, type Session } from './types.ts';

/** Where the page is. */
export type Phase = 'starting' | 'signed-out' | 'signed-in';

/** The line at the top of the page that says how Parley is doing. */
export interface Banner {
  kind: 'offline' | 'unreachable' | 'degraded' | 'back';
  text: string;
}

/** Messages per history page (the server allows up to 200). */
const historyPageSize = 50;
/** Events per sync page, and pages per catch-up before starting afresh from "now". */
const syncPageSize = 500;
const syncPagesMax = 40;
/** Pages fetched to fill one hole in a timeline. */
const gapPagesMax = 10;
/** Sends attempted in one pass over the outbox; the next pass continues. */
const flushBatchMax = 500;
/** Typing frames at most this often per conversation. */
const typingEveryMs = 3000;
/** How long "back online" stays up. */
const backShowMs = 5000;
/** While the socket is up, sync now and then so the stored cursor stays fresh. */
const cursorRefreshMs = 30_000;
/** Read receipts sent back to back for one conversation before waiting for the next look. */
const readSendsMax = 10;
/** Coalesces writes of the offline copy. */
const saveDelayMs = 300;

const usernamePattern = /^[a-z0-9_.-]{3,32}$/;

type Listener = () => void;

/** The web client's state and actions; one per page. */
export class ParleyClient {
  phase: Phase = 'starting';
  session: Session | undefined;
  model: Model | undefined;
  /** The signed-in account's queued messages, in typed order. */
  outbox: OutboxItem[] = [];
  openId: string | undefined;
  signInNotice: string | undefined;
  /** False when IndexedDB is unavailable: the outbox then lasts as long as the page. */
  durable = true;
  loadingOlder = new Set<string>();

  private browserOffline = typeof navigator !== 'undefined' && navigator.onLine === false;
  private socketOpen = false;
  /** A request or the socket failed for want of an answer; cleared when the socket opens. */
  private unreachable = false;
  private degraded: string | undefined;
  /** Who said so: the server (a status frame; only its `ok` clears it) or a 503 (a success clears it). */
  private degradedBy: 'server' | 'http' = 'http';
  private degradedProbeTimer: ReturnType<typeof setTimeout> | undefined;
  private degradedProbeAttempt = 0;
  private backUntilMs = 0;

  private ws: WebSocket | undefined;
  private reconnectAttempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private flushAttempt = 0;
  private flushing = false;
  private flushAgain = false;
  private lastOrder = 0;
  private cursor: string | undefined;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private cursorTimer: ReturnType<typeof setTimeout> | undefined;
  private typingTimer: ReturnType<typeof setTimeout> | undefined;
  private saveTimer: ReturnType<typeof setTimeout> | undefined;
  private dirtyTimelines = new Set<string>();
  private typingSentMs = new Map<string, number>();
  private readSentSeq = new Map<string, number>();
  private readWantedSeq = new Map<string, number>();
  private readInFlight = new Set<string>();
  private listRefreshing = false;
  private listRefreshAgain = false;
  /** Bumped on every sign-in and sign-out: async work of an older session sees it and stops. */
  private generation = 0;
  private listeners = new Set<Listener>();
  private notifyQueued = false;

  /** Calls `listener` after every change (coalesced per task); returns the unsubscribe. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      for (const listener of this.listeners) listener();
    });
  }

  /** Starts the client: restores a saved session and listens to the browser's network events. */
  async start(): Promise<void> {
    window.addEventListener('online', () => {
      this.browserOffline = false;
      this.unreachable = true; // until the socket is back, then "back online"
      this.reconnectNow();
    });
    window.addEventListener('offline', () => {
      this.browserOffline = true;
      this.ws?.close(4000, 'browser offline');
      this.notify();
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState !== 'visible' || this.phase !== 'signed-in') return;
      // After sleep the socket may be dead without knowing it: catch up either way.
      if (this.ws) void this.catchUp();
      else this.reconnectNow();
    });
    this.durable = await storage.isDurable();
    const session = storage.readSession();
    if (session) await this.enter(session);
    else {
      this.phase = 'signed-out';
      this.notify();
    }
  }

  // ---- the banner -------------------------------------------------------------------------

  /** What the banner says now, if anything. */
  banner(nowMs: number): Banner | undefined {
    const waiting = this.outbox.filter((item) => item.state === 'pending').length;
    const kept = waiting > 0 ? ` ${plural(waiting, 'message')} waiting to be sent ${waiting === 1 ? 'is' : 'are'} kept on this device.` : ' What you write is kept and sent when Parley is back.';
    if (this.browserOffline) return { kind: 'offline', text: `You are offline.${kept}` };
    if (this.phase !== 'signed-in') return undefined;
    if (this.unreachable && !this.socketOpen) return { kind: 'unreachable', text: `Cannot reach Parley; reconnecting.${kept}` };
    if (this.degraded) return { kind: 'degraded', text: `Parley is degraded: ${this.degraded}.${kept}` };
    if (nowMs < this.backUntilMs) return { kind: 'back', text: 'Back online: Parley is reachable again and you are up to date.' };
    return undefined;
  }

  private showBack(): void {
    this.backUntilMs = Date.now() + backShowMs;
    setTimeout(() => this.notify(), backShowMs + 50);
  }

  // ---- session ----------------------------------------------------------------------------

  /** Signs in; answers a sentence for the form when it did not work. */
  async signIn(username: string, password: string): Promise<string | undefined> {
    if (!username || !password) return 'Enter your username and password.';
    const result = await call<Session>('POST', '/v1/sessions', { body: { username: username.trim().toLowerCase(), password } });
    if (!result.ok) return this.formError(result, 'sign in');
    await this.enter(result.body);
    return undefined;
  }

  /** Creates an account and signs in; answers a sentence for the form when it did not work. */
  async register(username: string, password: string): Promise<string | undefined> {
    const name = username.trim().toLowerCase();
    if (!usernamePattern.test(name)) return 'A username is 3 to 32 characters: a–z, 0–9, _ . and -.';
    if (password.length < 8) return 'A password needs at least 8 characters.';
    const result = await call<Account>('POST', '/v1/accounts', { body: { username: name, password } });
    if (!result.ok) {
      if (result.status === 409) return `The username "${name}" is taken. Choose another, or sign in if it is yours.`;
      return this.formError(result, 'create the account');
    }
    return this.signIn(name, password);
  }

  private formError(result: Extract<ApiResult<unknown>, { ok: false }>, action: string): string {
    if (result.status === 401) return 'Wrong username or password.';
    if (result.status === 0) return `Cannot reach Parley to ${action}. Check your connection and try again.`;
    if (result.status === 429) return `Too many attempts. Try again in ${Math.ceil((result.retryAfterMs ?? 10_000) / 1000)} s.`;
    if (result.status >= 500) return `Parley cannot ${action} right now (${result.detail}). Try again in a moment.`;
    return `Could not ${action}: ${result.detail}.`;
  }

  /** Signs out: the token stops working; unsent messages stay for the next sign-in. */
  async signOut(): Promise<void> {
    const session = this.session;
    const waiting = this.outbox.length;
    this.leave();
    if (session) {
      await call('DELETE', '/v1/sessions/current', { token: session.token, timeoutMs: 3000 });
      // The offline copy of the conversations goes with the session; the outbox does not.
      await storage.deleteValues(`${session.account.id}:`).catch(() => undefined);
    }
    this.signInNotice = waiting > 0 ? `Signed out. ${plural(waiting, 'unsent message')} ${waiting === 1 ? 'is' : 'are'} kept for your next sign-in.` : 'Signed out.';
    this.notify();
  }

  private leave(): void {
    this.generation++;
    const ws = this.ws;
    this.ws = undefined;
    ws?.close(1000, 'signed out');
    for (const timer of [this.reconnectTimer, this.flushTimer, this.cursorTimer, this.typingTimer, this.degradedProbeTimer]) clearTimeout(timer);
    this.reconnectTimer = this.flushTimer = this.cursorTimer = this.typingTimer = this.degradedProbeTimer = undefined;
    if (this.saveTimer) {
      clearTimeout(this.saveTimer);
      this.saveTimer = undefined;
      void this.saveNow();
    }
    storage.writeSession(undefined);
    this.session = undefined;
    this.model = undefined;
    this.outbox = [];
    this.cursor = undefined;
    this.readSentSeq.clear();
    this.readWantedSeq.clear();
    this.typingSentMs.clear();
    this.socketOpen = false;
    this.unreachable = false;
    this.degraded = undefined;
    this.phase = 'signed-out';
  }

  /** The session ended on the server (401): back to sign-in, the outbox kept. */
  private expire(): void {
    if (this.phase !== 'signed-in') return;
    const waiting = this.outbox.length;
    this.leave();
    this.signInNotice =
      'Your session has ended; sign in again.' + (waiting > 0 ? ` ${plural(waiting, 'unsent message')} ${waiting === 1 ? 'is' : 'are'} kept and will be sent when you do.` : '');
    this.notify();
  }

  private async enter(session: Session): Promise<void> {
    const generation = ++this.generation;
    storage.writeSession(session);
    const me = session.account;
    const [list, reads, cursor, outbox] = await Promise.all([
      storage.readValue<ConversationItem[]>(`${me.id}:conversations`).catch(() => undefined),
      storage.readValue<[string, [string, number][]][]>(`${me.id}:reads`).catch(() => undefined),
      storage.readValue<string>(`${me.id}:cursor`).catch(() => undefined),
      storage.readOutbox().catch(() => [] as OutboxItem[]),
    ]);
    if (generation !== this.generation) return;
    const model = emptyModel(me);
    for (const item of list ?? []) model.conversations.set(item.id, item);
    model.reads = new Map((reads ?? []).map(([conversationId, byAccount]) => [conversationId, new Map(byAccount)]));
    this.session = session;
    this.model = model;
    this.cursor = cursor;
    this.outbox = inTypedOrder(outbox, me.id);
    this.lastOrder = Math.max(this.lastOrder, ...this.outbox.map((item) => item.order));
    this.phase = 'signed-in';
    this.signInNotice = undefined;
    this.notify();
    if (this.openId) void this.openConversation(this.openId);
    this.connect();
    void this.catchUp();
    void this.flush();
  }

  /** Calls the API as the signed-in account and keeps the connection state honest. */
  private async authed<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<ApiResult<T>> {
    const session = this.session;
    if (!session) return { ok: false, status: 401, code: 'unauthorized', detail: 'Not signed in' };
    const result = await call<T>(method, path, { token: session.token, body });
    if (session !== this.session) return result;
    if (result.ok) {
      if (this.degraded && this.degradedBy === 'http') {
        this.degraded = undefined;
        this.degradedProbeAttempt = 0;
        if (this.socketOpen) this.showBack();
        this.notify();
      }
    } else if (result.status === 401) {
      this.expire();
    } else if (result.status === 0) {
      if (!this.unreachable) {
        this.unreachable = true;
        this.notify();
      }
    } else if (result.status === 503) {
      this.markDegraded(result.detail, 'http', result.retryAfterMs);
    }
    return result;
  }

  /**
   * Says Parley is degraded. After a 503, nothing else may ask the server for a while (an idle
   * person), so the client asks itself, with backoff, until an answer clears the banner.
   */
  private markDegraded(detail: string, by: 'server' | 'http', retryAfterMs = 0): void {
    if (by === 'http' && this.degraded && this.degradedBy === 'server') return;
    this.degraded = detail.replace(/\.$/, '');
    this.degradedBy = by;
    this.notify();
    if (by !== 'http' || this.degradedProbeTimer) return;
    const generation = this.generation;
    const delayMs = Math.max(retryAfterMs, backoffDelayMs(this.degradedProbeAttempt++, Math.random()));
    this.degradedProbeTimer = setTimeout(() => {
      this.degradedProbeTimer = undefined;
      // /v1/me reads the session from the database: an answer means the database answers.
      if (generation === this.generation && this.degraded && this.degradedBy === 'http') void this.authed('GET', '/v1/me');
    }, delayMs);
  }

  // ---- the live socket --------------------------------------------------------------------

  private connect(): void {
    if (this.ws || this.phase !== 'signed-in' || !this.session) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const generation = this.generation;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/stream?token=${encodeURIComponent(this.session.token)}`;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (generation !== this.generation) return ws.close(1000);
      opened = true;
      const wasDown = this.unreachable || this.browserOffline;
      this.socketOpen = true;
      this.browserOffline = false; // connected, whatever navigator.onLine said
      this.unreachable = false;
      this.reconnectAttempt = 0;
      if (wasDown && !this.degraded) this.showBack();
      this.notify();
      void this.catchUp().then(() => this.flushNow());
    };
    ws.onmessage = (event: MessageEvent) => {
      if (generation === this.generation && typeof event.data === 'string') this.onFrame(event.data);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.socketOpen = false;
      if (generation !== this.generation || this.phase !== 'signed-in') return;
      if (opened) {
        // Dropped after working (server restart, network change): say so and come back.
        this.unreachable = true;
        this.notify();
        this.scheduleReconnect();
      } else {
        // Never opened: the browser hides why, so ask over HTTP (401 → sign in again).
        void this.authed('GET', '/v1/me').then((probe) => {
          if (generation !== this.generation) return;
          // HTTP works but the socket does not (a proxy?): catch up at each attempt meanwhile.
          if (probe.ok) void this.catchUp();
          this.scheduleReconnect();
        });
      }
    };
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.ws || this.phase !== 'signed-in') return;
    const delayMs = backoffDelayMs(this.reconnectAttempt++, Math.random());
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delayMs);
  }

  /** Reconnects at once (the network is back, or the person asked). */
  reconnectNow(): void {
    if (this.phase !== 'signed-in') return;
    this.reconnectAttempt = 0;
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
    }
    this.connect();
    this.flushNow();
    this.notify();
  }

  private onFrame(text: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return;
    }
    switch (frame.type) {
      case 'message':
      case 'read':
      case 'conversation':
      case 'typing':
        this.apply(frame);
        if (frame.type !== 'typing' && !this.cursorTimer) {
          this.cursorTimer = setTimeout(() => {
            this.cursorTimer = undefined;
            void this.catchUp();
          }, cursorRefreshMs);
        }
        break;
      case 'status':
        if (frame.state === 'degraded') this.markDegraded(frame.detail, 'server');
        else if (this.degraded) {
          this.degraded = undefined;
          this.degradedProbeAttempt = 0;
          this.showBack();
        }
        this.notify();
        break;
      case 'error':
        if (frame.code === 'unauthorized') this.expire();
        break;
      case 'ack':
        break;
    }
  }

  private apply(event: ChatEvent): void {
    const model = this.model;
    if (!model) return;
    const outcome = applyEvent(model, event, Date.now());
    if (event.type === 'message') {
      this.dirtyTimelines.add(event.message.conversationId);
      if (event.message.senderId === model.me.id) void this.dropFromOutbox(event.message.clientMessageId);
    }
    if (event.type === 'typing') this.scheduleTypingExpiry();
    if (outcome.refreshList) void this.refreshList();
    if (outcome.gap) void this.fillGap(outcome.gap.conversationId, outcome.gap.afterSeq);
    this.saveSoon();
    this.notify();
  }

  private scheduleTypingExpiry(): void {
    if (!this.model) return;
    clearTimeout(this.typingTimer);
    const next = nextTypingExpiryMs(this.model, Date.now());
    if (next !== undefined) this.typingTimer = setTimeout(() => this.scheduleTypingExpiry(), next - Date.now() + 20);
    this.notify();
  }

  // ---- catching up ------------------------------------------------------------------------

  /** Reads everything since the stored cursor, then the list; one at a time. */
  catchUp(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.syncAgain = false;
          await this.catchUpOnce(this.generation);
        } while (this.syncAgain);
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }

  private async catchUpOnce(generation: number): Promise<void> {
    const me = this.model?.me;
    if (!me) return;
    clearTimeout(this.cursorTimer);
    this.cursorTimer = undefined;
    let fresh = this.cursor === undefined;
    for (let page = 0; !fresh; page++) {
      if (page >= syncPagesMax) {
        // Too far behind to replay: start from now and fetch the list and history afresh.
        fresh = true;
        break;
      }
      const result = await this.authed<{ events: ChatEvent[]; cursor: string; hasMore: boolean }>(
        'GET',
        `/v1/sync?cursor=${encodeURIComponent(this.cursor!)}&limit=${syncPageSize}`,
      );
      if (generation !== this.generation) return;
      if (!result.ok) {
        if (result.status === 400) fresh = true; // a cursor this server does not know
        else return;
        break;
      }
      for (const event of result.body.events) this.apply(event);
      this.cursor = result.body.cursor;
      await this.saveNow();
      if (!result.body.hasMore) break;
    }
    if (fresh) {
      // The cursor comes first: anything after it reaches us by the next sync, even what the
      // list below already shows (events apply idempotently).
      const now = await this.authed<{ cursor: string }>('GET', '/v1/sync');
      if (generation !== this.generation || !now.ok) return;
      this.cursor = now.body.cursor;
      await storage.writeValues({ [`${me.id}:cursor`]: this.cursor });
    }
    await this.refreshList();
    if (this.openId && generation === this.generation) await this.loadNewest(this.openId);
  }

  /** Fetches the list; calls during a fetch make one more fetch after it, not one each. */
  private async refreshList(): Promise<void> {
    if (this.listRefreshing) {
      this.listRefreshAgain = true;
      return;
    }
    this.listRefreshing = true;
    const generation = this.generation;
    try {
      do {
        this.listRefreshAgain = false;
        const result = await this.authed<{ conversations: ConversationItem[] }>('GET', '/v1/conversations');
        if (generation !== this.generation || !result.ok || !this.model) return;
        replaceList(this.model, result.body.conversations);
        this.saveSoon();
        this.notify();
      } while (this.listRefreshAgain);
    } finally {
      this.listRefreshing = false;
    }
  }

  private async fillGap(conversationId: string, afterSeq: number): Promise<void> {
    const generation = this.generation;
    let after = afterSeq;
    for (let page = 0; page < gapPagesMax; page++) {
      const result = await this.authed<{ messages: Message[]; hasMore: boolean }>(
        'GET',
        `/v1/conversations/${encodeURIComponent(conversationId)}/messages?afterSeq=${after}&limit=200`,
      );
      if (generation !== this.generation || !result.ok || !this.model) return;
      addNewerPage(this.model, conversationId, result.body.messages);
      this.dirtyTimelines.add(conversationId);
      this.notify();
      const last = result.body.messages[result.body.messages.length - 1];
      if (!result.body.hasMore || !last) break;
      after = last.seq;
    }
    this.saveSoon();
  }

  // ---- conversations and history ----------------------------------------------------------

  /** Opens a conversation (or the list, with undefined): cached history first, then the server's. */
  async openConversation(id: string | undefined): Promise<void> {
    this.openId = id;
    this.notify();
    const model = this.model;
    if (!id || !model) return;
    if (!model.timelines.has(id)) {
      const cached = await storage.readValue<Timeline>(`${model.me.id}:messages:${id}`).catch(() => undefined);
      if (cached && this.model === model && !model.timelines.has(id)) {
        model.timelines.set(id, cached);
        this.notify();
      }
    }
    await this.loadNewest(id);
  }

  private async loadNewest(id: string): Promise<void> {
    const generation = this.generation;
    const result = await this.authed<{ messages: Message[]; hasMore: boolean }>(
      'GET',
      `/v1/conversations/${encodeURIComponent(id)}/messages?limit=${historyPageSize}`,
    );
    if (generation !== this.generation || !this.model) return;
    if (!result.ok) {
      if ((result.status === 404 || result.status === 403) && this.openId === id) {
        this.openId = undefined;
        this.notify();
      }
      return;
    }
    addNewestPage(this.model, id, result.body.messages, result.body.hasMore);
    this.dirtyTimelines.add(id);
    this.saveSoon();
    this.notify();
  }

  /** Loads the page before the oldest loaded message. */
  async loadOlder(id: string): Promise<void> {
    const timeline = this.model?.timelines.get(id);
    if (!timeline || !timeline.hasOlder || this.loadingOlder.has(id)) return;
    const first = timeline.messages[0];
    const generation = this.generation;
    this.loadingOlder.add(id);
    this.notify();
    try {
      const result = await this.authed<{ messages: Message[]; hasMore: boolean }>(
        'GET',
        `/v1/conversations/${encodeURIComponent(id)}/messages?limit=${historyPageSize}${first ? `&beforeSeq=${first.seq}` : ''}`,
      );
      if (generation !== this.generation || !result.ok || !this.model) return;
      addOlderPage(this.model, id, result.body.messages, result.body.hasMore);
    } finally {
      this.loadingOlder.delete(id);
      this.notify();
    }
  }

  /** Starts a conversation with people by username: one and no title is direct, else a group. */
  async startConversation(usernames: string[], title: string): Promise<{ id: string } | { error: string }> {
    const members = [...new Set(usernames.map((u) => u.trim().toLowerCase()).filter(Boolean))];
    if (members.length === 0) return { error: 'Name at least one person by their username.' };
    const kind = members.length === 1 && !title.trim() ? 'direct' : 'group';
    const result = await this.authed<Conversation>('POST', '/v1/conversations', { kind, members, ...(title.trim() ? { title: title.trim() } : {}) });
    if (!result.ok) {
      if (result.status === 0) return { error: 'Cannot reach Parley to start the conversation. Try again when you are back online.' };
      return { error: `Could not start the conversation: ${result.detail.replace(/\.$/, '')}.` };
    }
    if (this.model) {
      upsertConversation(this.model, result.body);
      this.saveSoon();
      this.notify();
    }
    return { id: result.body.id };
  }

  /** Marks the open conversation read up to its newest loaded message. */
  markRead(id: string): void {
    const model = this.model;
    const last = model?.timelines.get(id)?.messages.at(-1);
    if (!model || !last) return;
    if (markReadLocally(model, id, last.seq)) {
      this.saveSoon();
      this.notify();
    }
    if ((this.readWantedSeq.get(id) ?? 0) < last.seq) this.readWantedSeq.set(id, last.seq);
    void this.sendRead(id);
  }

  // One read receipt in flight per conversation; a burst of messages ends in one or two receipts.
  private async sendRead(id: string): Promise<void> {
    if (this.readInFlight.has(id)) return;
    this.readInFlight.add(id);
    const generation = this.generation;
    try {
      for (let i = 0; i < readSendsMax; i++) {
        const wanted = this.readWantedSeq.get(id) ?? 0;
        if (wanted <= (this.readSentSeq.get(id) ?? 0)) return;
        const result = await this.authed('POST', `/v1/conversations/${encodeURIComponent(id)}/read`, { seq: wanted });
        // On failure the next look at the conversation tries again.
        if (generation !== this.generation || !result.ok) return;
        this.readSentSeq.set(id, wanted);
      }
    } finally {
      this.readInFlight.delete(id);
    }
  }

  /** Tells the others I am typing (at most every few seconds, only while connected). */
  typing(id: string): void {
    const now = Date.now();
    if (!this.ws || !this.socketOpen || now - (this.typingSentMs.get(id) ?? 0) < typingEveryMs) return;
    this.typingSentMs.set(id, now);
    this.ws.send(JSON.stringify({ type: 'typing', conversationId: id }));
  }

  // ---- the outbox -------------------------------------------------------------------------

  /**
   * Queues a message: it is on disk (IndexedDB) before it shows as pending, and it is sent with
   * the clientMessageId chosen here however many attempts it takes.
   */
  async send(conversationId: string, body: string): Promise<string | undefined> {
    const session = this.session;
    const text = body.trim();
    if (!session || !text) return 'Write something first.';
    if (bodyLength(text) > messageBodyMax) return `A message holds at most ${messageBodyMax} characters.`;
    const now = Date.now();
    this.lastOrder = nextOrder(this.lastOrder, now);
    const item: OutboxItem = {
      clientMessageId: uuid(),
      accountId: session.account.id,
      conversationId,
      body: text,
      createdAtMs: now,
      order: this.lastOrder,
      state: 'pending',
    };
    try {
      await storage.putOutbox(item);
    } catch {
      this.durable = false; // still sent, but would not survive a reload
    }
    if (this.session !== session) return undefined;
    this.outbox = [...this.outbox, item];
    this.notify();
    // While an earlier message waits out its backoff, this one waits behind it.
    if (!this.flushTimer) void this.flush();
    return undefined;
  }

  /** Puts a failed message back in the queue. */
  async retry(clientMessageId: string): Promise<void> {
    const item = this.outbox.find((i) => i.clientMessageId === clientMessageId);
    if (!item) return;
    item.state = 'pending';
    delete item.error;
    await storage.putOutbox(item).catch(() => undefined);
    this.notify();
    this.flushNow();
  }

  /** Drops a failed message for good. */
  async discard(clientMessageId: string): Promise<void> {
    await this.dropFromOutbox(clientMessageId);
  }

  private async dropFromOutbox(clientMessageId: string): Promise<void> {
    if (this.outbox.some((i) => i.clientMessageId === clientMessageId)) {
      this.outbox = this.outbox.filter((i) => i.clientMessageId !== clientMessageId);
      this.notify();
    }
    await storage.deleteOutbox(clientMessageId).catch(() => undefined);
  }

  /** Sends queued messages one at a time, in typed order, until the queue is empty or one must wait. */
  async flush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    this.flushing = true;
    try {
      do {
        this.flushAgain = false;
        // Several tabs share one outbox: only one sends at a time.
        if (navigator.locks) await navigator.locks.request('parley-outbox', () => this.flushOnce());
        else await this.flushOnce();
        // A send that must wait (backoff) holds the queue: later messages may not overtake it.
      } while (this.flushAgain && !this.flushTimer);
    } finally {
      this.flushing = false;
    }
  }

  /** Sends now, without waiting out the backoff: the connection is back or the person asked. */
  private flushNow(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.flushAttempt = 0;
    void this.flush();
  }

  private async flushOnce(): Promise<void> {
    const session = this.session;
    if (!session || this.phase !== 'signed-in') return;
    const generation = this.generation;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    // What is on disk is the truth: another tab may have sent some meanwhile.
    const stored = await storage.readOutbox().catch(() => undefined);
    if (generation !== this.generation) return;
    if (stored) {
      this.outbox = inTypedOrder(stored, session.account.id);
      this.notify();
    }
    for (let i = 0; i < flushBatchMax; i++) {
      const item = nextToSend(this.outbox, session.account.id);
      if (!item) {
        this.flushAttempt = 0;
        return;
      }
      const result = await this.authed<{ message: Message }>('POST', `/v1/conversations/${encodeURIComponent(item.conversationId)}/messages`, {
        clientMessageId: item.clientMessageId,
        body: item.body,
      });
      if (generation !== this.generation) return;
      const verdict = sendVerdict(result.status);
      if (verdict === 'stored' && result.ok) {
        await this.dropFromOutbox(item.clientMessageId);
        this.apply({ type: 'message', message: result.body.message });
      } else if (verdict === 'retry') {
        const delayMs = Math.max(result.ok ? 0 : (result.retryAfterMs ?? 0), backoffDelayMs(this.flushAttempt++, Math.random()));
        this.flushTimer = setTimeout(() => void this.flush(), delayMs);
        return;
      } else if (verdict === 'signed-out') {
        return; // authed() has sent the person to sign in; the message waits for them
      } else {
        item.state = 'failed';
        item.error = result.ok ? 'refused' : result.detail;
        await storage.putOutbox(item).catch(() => undefined);
        this.notify();
      }
    }
    this.flushTimer = setTimeout(() => void this.flush(), 0);
  }

  // ---- the offline copy -------------------------------------------------------------------

  private saveSoon(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.saveNow();
    }, saveDelayMs);
  }

  private async saveNow(): Promise<void> {
    const model = this.model;
    if (!model) return;
    const me = model.me.id;
    const values: Record<string, unknown> = {
      [`${me}:conversations`]: [...model.conversations.values()],
      [`${me}:reads`]: [...model.reads.entries()].map(([conversationId, byAccount]) => [conversationId, [...byAccount.entries()]]),
    };
    if (this.cursor) values[`${me}:cursor`] = this.cursor;
    for (const id of this.dirtyTimelines) {
      const timeline = model.timelines.get(id);
      if (timeline) values[`${me}:messages:${id}`] = trimmedTimeline(timeline);
    }
    this.dirtyTimelines.clear();
    await storage.writeValues(values).catch(() => undefined);
  }
}

/** "1 message", "3 messages". */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
