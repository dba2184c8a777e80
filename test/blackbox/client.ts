// A tiny typed client for Parley's public contract (/work/shared/API.md): the HTTP API and the
// WebSocket `/v1/stream`. It is written from the contract alone; nothing here imports server code.
//
// HTTP calls return the raw answer (`HttpResult`) so that tests can assert status codes, headers
// and bodies; `expectJson` / `expectProblem` turn an answer into a typed value or a clear error.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import WebSocket from 'ws';
import type { RawData } from 'ws';

// ---------------------------------------------------------------------------------------------
// Contract schemas (loose: extra fields are allowed in answers, required ones must be there).

/** Ids are opaque: the contract does not say whether they are strings or numbers. */
export const IdSchema = z.union([z.string().min(1), z.number().int()]);
export type Id = z.infer<typeof IdSchema>;

/** A timestamp: an ISO-8601 string (or epoch number) that `Date` understands. */
export const TimestampSchema = z.union([
  z.string().refine((s) => !Number.isNaN(Date.parse(s)), { message: 'not a parseable date string' }),
  z.number().finite(),
]);

export const AccountSchema = z.looseObject({
  id: IdSchema,
  username: z.string(),
  displayName: z.string().nullable(),
});
export type Account = z.infer<typeof AccountSchema>;

export const SessionSchema = z.looseObject({
  token: z.string().min(1),
  account: AccountSchema,
});
export type Session = z.infer<typeof SessionSchema>;

export const ConversationSchema = z.looseObject({
  id: IdSchema,
  kind: z.enum(['direct', 'group']),
  title: z.string().nullable().optional(),
  members: z.array(AccountSchema),
  lastSeq: z.number().int().nonnegative(),
  createdAt: TimestampSchema,
});
export type Conversation = z.infer<typeof ConversationSchema>;

export const MessageSchema = z.looseObject({
  id: IdSchema,
  conversationId: IdSchema,
  seq: z.number().int().positive(),
  senderId: IdSchema,
  clientMessageId: z.string(),
  body: z.string(),
  sentAt: TimestampSchema,
});
export type Message = z.infer<typeof MessageSchema>;

export const SendAnswerSchema = z.looseObject({ message: MessageSchema });

export const ConversationListItemSchema = ConversationSchema.extend({
  lastReadSeq: z.number().int().nonnegative(),
  unread: z.number().int().nonnegative(),
  lastMessage: MessageSchema.nullable().optional(),
});
export type ConversationListItem = z.infer<typeof ConversationListItemSchema>;

export const ConversationListSchema = z.looseObject({ conversations: z.array(ConversationListItemSchema) });

export const HistorySchema = z.looseObject({
  messages: z.array(MessageSchema),
  hasMore: z.boolean(),
});
export type History = z.infer<typeof HistorySchema>;

export const MessageEventSchema = z.looseObject({ type: z.literal('message'), message: MessageSchema });
export const ConversationEventSchema = z.looseObject({ type: z.literal('conversation'), conversation: ConversationSchema });
export const ReadEventSchema = z.looseObject({
  type: z.literal('read'),
  conversationId: IdSchema,
  accountId: IdSchema,
  seq: z.number().int().nonnegative(),
});
export const TypingEventSchema = z.looseObject({ type: z.literal('typing'), conversationId: IdSchema, accountId: IdSchema });
export const AckEventSchema = z.looseObject({ type: z.literal('ack'), clientMessageId: z.string(), message: MessageSchema });
export const ErrorEventSchema = z.looseObject({
  type: z.literal('error'),
  clientMessageId: z.string().nullable().optional(),
  code: z.string().min(1),
  detail: z.string(),
});
export const StatusEventSchema = z.looseObject({
  type: z.literal('status'),
  state: z.enum(['ok', 'degraded']),
  detail: z.unknown(),
});

export type MessageEvent = z.infer<typeof MessageEventSchema>;
export type ConversationEvent = z.infer<typeof ConversationEventSchema>;
export type ReadEvent = z.infer<typeof ReadEventSchema>;
export type TypingEvent = z.infer<typeof TypingEventSchema>;
export type AckEvent = z.infer<typeof AckEventSchema>;
export type ErrorEvent = z.infer<typeof ErrorEventSchema>;
export type StatusEvent = z.infer<typeof StatusEventSchema>;
export type ServerEvent = MessageEvent | ConversationEvent | ReadEvent | TypingEvent | AckEvent | ErrorEvent | StatusEvent;

/** The events `/v1/sync` carries: the same shapes as the socket's `message`, `read`, `conversation`. */
export const SyncEventSchema = z.discriminatedUnion('type', [MessageEventSchema, ReadEventSchema, ConversationEventSchema]);
export type SyncEvent = z.infer<typeof SyncEventSchema>;
export const CursorSchema = z.union([z.string().min(1), z.number()]);
export const SyncSchema = z.looseObject({
  events: z.array(SyncEventSchema),
  cursor: CursorSchema,
  hasMore: z.boolean().optional(),
});
export type SyncAnswer = z.infer<typeof SyncSchema>;

export const ProblemSchema = z.looseObject({
  type: z.string().min(1),
  title: z.string().min(1),
  status: z.number().int(),
  detail: z.string(),
  code: z.string().min(1),
});
export type Problem = z.infer<typeof ProblemSchema>;

export type ClientFrame =
  | { type: 'send'; conversationId: Id; clientMessageId: string; body: string }
  | { type: 'typing'; conversationId: Id }
  | { type: 'read'; conversationId: Id; seq: number };

// ---------------------------------------------------------------------------------------------
// Helpers for clear failures.

export class CheckError extends Error {
  override name = 'CheckError';
}

export function fail(message: string): never {
  throw new CheckError(message);
}

export function show(value: unknown, max = 400): string {
  let s: string;
  try {
    s = typeof value === 'string' ? value : JSON.stringify(value);
  } catch {
    s = String(value);
  }
  if (s === undefined) s = String(value);
  return s.length > max ? `${s.slice(0, max)}…(${s.length} chars)` : s;
}

/** Parses `value` with `schema` or fails naming `what`, the problems and the value. */
export function parseAs<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) fail(`${what}: unexpected shape: ${z.prettifyError(r.error).replace(/\n/g, '; ')} — got ${show(value)}`);
  return r.data;
}

// ---------------------------------------------------------------------------------------------
// HTTP

export interface HttpResult {
  method: string;
  path: string;
  status: number;
  headers: Headers;
  contentType: string;
  text: string;
  /** The parsed JSON body, or `undefined` when the body is empty or not JSON. */
  json: unknown;
  durationMs: number;
}

export interface RequestOptions {
  /** A JSON value to send (serialised with JSON.stringify). */
  json?: unknown;
  /** A raw body (sent as is; content type application/json unless `contentType` says otherwise). */
  raw?: string;
  contentType?: string;
  /** `undefined`: the client's token; `null`: no Authorization header; a string: that token. */
  token?: string | null;
  /** A full Authorization header value, overriding `token`. */
  authorization?: string;
  query?: Record<string, string | number | undefined>;
  /** Retry answers 429 (honouring Retry-After, bounded). Default true. */
  retryRateLimited?: boolean;
}

export interface ClientOptions {
  token?: string;
  /** Called with every HTTP answer (including rate-limited ones that were retried). */
  onResponse?: (r: HttpResult) => void;
  onLog?: (line: string) => void;
  timeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class ParleyClient {
  readonly baseUrl: string;
  readonly token: string | undefined;
  private readonly opts: ClientOptions;

  constructor(baseUrl: string, opts: ClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.token = opts.token;
    this.opts = opts;
  }

  /** A client sharing this one's settings, authenticated with `token`. */
  withToken(token: string | undefined): ParleyClient {
    return new ParleyClient(this.baseUrl, { ...this.opts, token });
  }

  async request(method: string, path: string, o: RequestOptions = {}): Promise<HttpResult> {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(o.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json' };
    const token = o.token === undefined ? this.token : o.token;
    if (o.authorization !== undefined) headers.authorization = o.authorization;
    else if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (o.raw !== undefined) body = o.raw;
    else if (o.json !== undefined) body = JSON.stringify(o.json);
    if (body !== undefined) headers['content-type'] = o.contentType ?? 'application/json';

    const maxAttempts = o.retryRateLimited === false ? 1 : 5;
    for (let attempt = 1; ; attempt++) {
      const started = Date.now();
      const res = await fetch(url, {
        method,
        headers,
        body,
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
      }).catch((err: unknown) => {
        const cause = err instanceof Error && err.cause instanceof Error ? ` (${err.cause.message})` : '';
        fail(`${method} ${path}: request failed: ${err instanceof Error ? err.message : String(err)}${cause}`);
      });
      const text = await res.text();
      let json: unknown;
      if (text.length > 0) {
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
      }
      const result: HttpResult = {
        method,
        path: url.pathname + url.search,
        status: res.status,
        headers: res.headers,
        contentType: res.headers.get('content-type') ?? '',
        text,
        json,
        durationMs: Date.now() - started,
      };
      this.opts.onResponse?.(result);
      if (res.status === 429 && attempt < maxAttempts) {
        const ra = Number(res.headers.get('retry-after'));
        const waitMs = Number.isFinite(ra) && ra > 0 ? Math.min(ra * 1000, 5_000) : 500;
        this.opts.onLog?.(`  (429 on ${method} ${path}; retrying in ${waitMs} ms)`);
        await sleep(waitMs);
        continue;
      }
      return result;
    }
  }

  // --- accounts and sessions
  register(input: { username: string; password: string; displayName?: string }) {
    return this.request('POST', '/v1/accounts', { json: input, token: null });
  }
  login(input: { username: string; password: string }) {
    return this.request('POST', '/v1/sessions', { json: input, token: null });
  }
  logout() {
    return this.request('DELETE', '/v1/sessions/current');
  }
  me() {
    return this.request('GET', '/v1/me');
  }

  // --- conversations and messages
  createConversation(input: { kind: 'direct' | 'group'; members: string[]; title?: string }) {
    return this.request('POST', '/v1/conversations', { json: input });
  }
  listConversations() {
    return this.request('GET', '/v1/conversations');
  }
  getConversation(id: Id) {
    return this.request('GET', `/v1/conversations/${encodeURIComponent(String(id))}`);
  }
  send(conversationId: Id, input: { clientMessageId: string; body: string }) {
    return this.request('POST', `/v1/conversations/${encodeURIComponent(String(conversationId))}/messages`, { json: input });
  }
  history(conversationId: Id, q: { afterSeq?: number; beforeSeq?: number; limit?: number | string } = {}) {
    return this.request('GET', `/v1/conversations/${encodeURIComponent(String(conversationId))}/messages`, { query: q });
  }
  markRead(conversationId: Id, seq: number) {
    return this.request('POST', `/v1/conversations/${encodeURIComponent(String(conversationId))}/read`, { json: { seq } });
  }
  sync(q: { cursor?: string | number; limit?: number } = {}) {
    return this.request('GET', '/v1/sync', { query: q });
  }

  // --- documents and operations
  openapi() {
    return this.request('GET', '/v1/openapi.json');
  }
  status() {
    return this.request('GET', '/v1/status', { token: null });
  }
  healthz() {
    return this.request('GET', '/healthz', { token: null });
  }
  readyz() {
    return this.request('GET', '/readyz', { token: null });
  }
  metrics() {
    return this.request('GET', '/metrics', { token: null });
  }

  // --- typed shortcuts (assert the documented success status and shape)
  async sendOk(conversationId: Id, body: string, clientMessageId: string = randomUUID()): Promise<{ status: number; message: Message }> {
    const res = await this.send(conversationId, { clientMessageId, body });
    const answer = expectJson(res, [200, 201], SendAnswerSchema, 'send message');
    return { status: res.status, message: answer.message };
  }
  async historyOk(conversationId: Id, q: { afterSeq?: number; beforeSeq?: number; limit?: number } = {}): Promise<History> {
    return expectJson(await this.history(conversationId, q), 200, HistorySchema, `history ${show(q)}`);
  }
  async listOk(): Promise<ConversationListItem[]> {
    return expectJson(await this.listConversations(), 200, ConversationListSchema, 'GET /v1/conversations').conversations;
  }
  async syncOk(q: { cursor?: string | number; limit?: number } = {}): Promise<SyncAnswer> {
    return expectJson(await this.sync(q), 200, SyncSchema, `GET /v1/sync ${show(q)}`);
  }

  // --- WebSocket
  connect(opts: { auth?: 'query' | 'header'; token?: string | null; timeoutMs?: number } = {}): Promise<StreamClient> {
    const token = opts.token === undefined ? this.token : opts.token;
    return StreamClient.connect(this.baseUrl, token ?? null, opts.auth ?? 'query', opts.timeoutMs ?? 5_000);
  }
  tryConnect(opts: { auth?: 'query' | 'header'; token?: string | null; timeoutMs?: number } = {}): Promise<ConnectOutcome> {
    const token = opts.token === undefined ? this.token : opts.token;
    return StreamClient.tryConnect(this.baseUrl, token ?? null, opts.auth ?? 'query', opts.timeoutMs ?? 5_000);
  }
}

/** Asserts the status (one of `status`) and parses the JSON body with `schema`. */
export function expectJson<S extends z.ZodType>(res: HttpResult, status: number | number[], schema: S, what: string): z.infer<S> {
  expectStatus(res, status, what);
  if (res.json === undefined) fail(`${what}: expected a JSON body, got ${show(res.text || '(empty)')} (content-type ${res.contentType || 'none'})`);
  if (!/json/i.test(res.contentType)) fail(`${what}: expected a JSON content type, got ${show(res.contentType || '(none)')}`);
  return parseAs(schema, res.json, `${what} (${res.method} ${res.path})`);
}

export function expectStatus(res: HttpResult, status: number | number[], what: string): void {
  const allowed = Array.isArray(status) ? status : [status];
  if (!allowed.includes(res.status)) {
    fail(`${what}: expected HTTP ${allowed.join(' or ')}, got ${res.status} from ${res.method} ${res.path} — body ${show(res.text || '(empty)')}`);
  }
}

/** Why an answer is not a well-formed problem document, or `undefined` when it is. */
export function problemShapeError(res: HttpResult): string | undefined {
  if (!res.contentType.toLowerCase().startsWith('application/problem+json')) {
    return `content-type is ${show(res.contentType || '(none)')}, expected application/problem+json`;
  }
  const r = ProblemSchema.safeParse(res.json);
  if (!r.success) return `problem body ${show(res.text || '(empty)')} is missing or mistyping: ${z.prettifyError(r.error).replace(/\n/g, '; ')}`;
  if (r.data.status !== res.status) return `problem status ${r.data.status} differs from HTTP status ${res.status}`;
  if ((res.status === 429 || res.status === 503) && !res.headers.get('retry-after')) return `HTTP ${res.status} without a Retry-After header`;
  return undefined;
}

/** Asserts an error answer: its status, that it is problem+json and (when given) its `code`. */
export function expectProblem(res: HttpResult, status: number, code: string | undefined, what: string): Problem {
  expectStatus(res, status, what);
  const shape = problemShapeError(res);
  if (shape) fail(`${what}: HTTP ${res.status} but ${shape}`);
  const problem = ProblemSchema.parse(res.json);
  if (code !== undefined && problem.code !== code) fail(`${what}: expected problem code ${show(code)}, got ${show(problem.code)} — ${show(problem)}`);
  return problem;
}

// ---------------------------------------------------------------------------------------------
// WebSocket

export type ConnectOutcome =
  | { ok: true; stream: StreamClient }
  | { ok: false; statusCode?: number; closeCode?: number; reason: string };

export function streamUrl(baseUrl: string, token: string | null, auth: 'query' | 'header'): string {
  const url = new URL(baseUrl.replace(/\/+$/, '') + '/v1/stream');
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  if (auth === 'query' && token !== null) url.searchParams.set('token', token);
  return url.toString();
}

export class StreamClient {
  /** Every frame received, in order: parsed JSON, or `{ unparsed: string }` for non-JSON frames. */
  readonly received: unknown[] = [];
  closed: { code: number; reason: string } | undefined;
  private readonly ws: WebSocket;
  private waiters: Array<() => void> = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const text = isBinary ? `(binary ${rawLength(data)} bytes)` : rawToString(data);
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        value = { unparsed: text };
      }
      this.received.push(value);
      this.wake();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', () => {
      // surfaced through `close`
    });
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** Connects, or fails with a clear reason. */
  static async connect(baseUrl: string, token: string | null, auth: 'query' | 'header', timeoutMs: number): Promise<StreamClient> {
    const out = await StreamClient.tryConnect(baseUrl, token, auth, timeoutMs);
    if (!out.ok) fail(`WebSocket /v1/stream (token via ${auth}) was refused: ${out.reason}`);
    return out.stream;
  }

  /** Connects; resolves with the refusal (HTTP status of the upgrade or close code) instead of failing. */
  static tryConnect(baseUrl: string, token: string | null, auth: 'query' | 'header', timeoutMs: number): Promise<ConnectOutcome> {
    return new Promise<ConnectOutcome>((resolve) => {
      const headers: Record<string, string> = {};
      if (auth === 'header' && token !== null) headers.authorization = `Bearer ${token}`;
      const ws = new WebSocket(streamUrl(baseUrl, token, auth), { headers, handshakeTimeout: timeoutMs });
      let settled = false;
      const stream = new StreamClient(ws);
      const done = (o: ConnectOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(o);
      };
      const timer = setTimeout(() => {
        ws.terminate();
        done({ ok: false, reason: `no answer to the upgrade within ${timeoutMs} ms` });
      }, timeoutMs + 500);
      ws.once('open', () => done({ ok: true, stream }));
      ws.once('unexpected-response', (req, res) => {
        const statusCode = res.statusCode ?? 0;
        res.resume();
        req.destroy();
        done({ ok: false, statusCode, reason: `upgrade answered HTTP ${statusCode}` });
      });
      ws.once('close', (code: number, reason: Buffer) =>
        done({ ok: false, closeCode: code, reason: `closed with ${code} ${reason.toString()}`.trim() }),
      );
      ws.once('error', (err: Error) => done({ ok: false, reason: `error: ${err.message}` }));
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  sendRaw(text: string): void {
    if (!this.isOpen) fail(`cannot send on a WebSocket that is not open (closed: ${show(this.closed)})`);
    this.ws.send(text);
  }
  sendFrame(frame: ClientFrame | Record<string, unknown>): void {
    this.sendRaw(JSON.stringify(frame));
  }
  send(conversationId: Id, body: string, clientMessageId: string = randomUUID()): string {
    this.sendFrame({ type: 'send', conversationId, clientMessageId, body });
    return clientMessageId;
  }
  typing(conversationId: Id): void {
    this.sendFrame({ type: 'typing', conversationId });
  }
  read(conversationId: Id, seq: number): void {
    this.sendFrame({ type: 'read', conversationId, seq });
  }

  /**
   * Waits for the first received frame at index ≥ `from` that satisfies `pred`, for at most
   * `timeoutMs`. Fails naming `description` and listing what did arrive.
   */
  async waitFor(pred: (event: unknown) => boolean, description: string, opts: { timeoutMs?: number; from?: number } = {}): Promise<{ event: unknown; index: number }> {
    const timeoutMs = opts.timeoutMs ?? 5_000;
    const deadline = Date.now() + timeoutMs;
    let i = opts.from ?? 0;
    for (;;) {
      for (; i < this.received.length; i++) {
        const e = this.received[i];
        if (pred(e)) return { event: e, index: i };
      }
      if (this.closed) fail(`waiting for ${description}: the socket closed (${this.closed.code} ${this.closed.reason}); received ${show(this.received)}`);
      const left = deadline - Date.now();
      if (left <= 0) fail(`waiting for ${description}: nothing matching within ${timeoutMs} ms; received ${show(this.received.slice(opts.from ?? 0), 600)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits until the socket is closed by the server (or `timeoutMs` passes); returns whether it closed. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.closed !== undefined;
  }

  async close(): Promise<void> {
    if (this.closed || this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close(1000, 'done');
    if (!(await this.waitClosed(2_000))) this.ws.terminate();
  }
}

function rawToString(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return data.toString('utf8');
}

function rawLength(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data.byteLength;
}
