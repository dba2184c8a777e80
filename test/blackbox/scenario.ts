// Black-box checks of a running Parley server, written only from the public contract
// (/work/shared/API.md). Each check makes its own accounts with unique random usernames, so the
// suite can run again and again against the same server, and checks do not depend on each other.
import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { z } from 'zod';
import {
  AccountSchema,
  AckEventSchema,
  ConversationEventSchema,
  ConversationSchema,
  ErrorEventSchema,
  MessageEventSchema,
  ParleyClient,
  ReadEventSchema,
  SendAnswerSchema,
  SessionSchema,
  SyncSchema,
  TypingEventSchema,
  expectJson,
  expectProblem,
  expectStatus,
  fail,
  problemShapeError,
  show,
} from './client.ts';
import type { Account, Conversation, HttpResult, Id, Message, StreamClient, SyncEvent } from './client.ts';

export interface BlackboxResult {
  passed: string[];
  failed: { name: string; error: string }[];
}

// ---------------------------------------------------------------------------------------------
// Context and helpers

interface User {
  username: string;
  password: string;
  account: Account;
  token: string;
  client: ParleyClient;
}

interface Ctx {
  base: string;
  anon: ParleyClient;
  log: (line: string) => void;
  /** Registers a cleanup to run when the current check ends (sockets etc.). */
  defer(fn: () => Promise<void> | void): void;
  /** Registers and signs in a fresh account. */
  user(tag: string, displayName?: string): Promise<User>;
  /** Opens a socket for `u` that is closed when the check ends. */
  socket(u: User, auth?: 'query' | 'header'): Promise<StreamClient>;
}

interface Check {
  name: string;
  timeoutMs?: number;
  run(ctx: Ctx): Promise<void>;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';

function rand(n: number, alphabet = ALNUM): string {
  const bytes = randomBytes(n);
  let s = '';
  for (const b of bytes) s += alphabet[b % alphabet.length];
  return s;
}

/** A fresh valid username: `bb<tag>_<random>`, at most 32 characters of `a-z 0-9 _`. */
function uname(tag: string): string {
  return `bb${tag.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 8)}_${rand(12)}`;
}

const password = () => `pw-${randomUUID()}`;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) fail(message);
}

function eq(actual: unknown, expected: unknown, what: string): void {
  if (!isDeepStrictEqual(actual, expected)) fail(`${what}: expected ${show(expected)}, got ${show(actual)}`);
}

const sameId = (a: Id | undefined | null, b: Id | undefined | null) => a !== undefined && a !== null && b !== undefined && b !== null && String(a) === String(b);

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

function fmtSeqs(seqs: number[]): string {
  return seqs.length > 30 ? `[${seqs.slice(0, 15).join(',')},…,${seqs.slice(-10).join(',')}] (${seqs.length})` : `[${seqs.join(',')}]`;
}

function expectSeqs(actual: number[], expected: number[], what: string): void {
  if (isDeepStrictEqual(actual, expected)) return;
  const a = new Set(actual);
  const missing = expected.filter((s) => !a.has(s));
  const dup = actual.filter((s, i) => actual.indexOf(s) !== i);
  const extra = actual.filter((s) => !expected.includes(s));
  fail(
    `${what}: expected seqs ${fmtSeqs(expected)}, got ${fmtSeqs(actual)}` +
      (missing.length ? `; missing ${fmtSeqs(missing)}` : '') +
      (dup.length ? `; duplicated ${fmtSeqs(dup)}` : '') +
      (extra.length ? `; unexpected ${fmtSeqs(extra)}` : ''),
  );
}

function isContiguousAscending(seqs: number[]): boolean {
  return seqs.every((s, i) => i === 0 || s === (seqs[i - 1] ?? NaN) + 1);
}

const MESSAGE_FIELDS = ['id', 'conversationId', 'seq', 'senderId', 'clientMessageId', 'body', 'sentAt'] as const;

/** Asserts that two message representations are the same message (all contract fields). */
function sameMessage(actual: Message, expected: Message, what: string): void {
  const diffs: string[] = [];
  for (const k of MESSAGE_FIELDS) {
    if (String(actual[k]) !== String(expected[k])) diffs.push(`${k}: expected ${show(expected[k], 80)}, got ${show(actual[k], 80)}`);
  }
  if (diffs.length) fail(`${what}: not the same message — ${diffs.join('; ')}`);
}

function memberIds(c: Conversation): string[] {
  return c.members.map((m) => String(m.id)).sort();
}

function expectMembers(c: Conversation, users: User[], what: string): void {
  eq(memberIds(c), users.map((u) => String(u.account.id)).sort(), `${what}: member ids`);
  for (const u of users) {
    const m = c.members.find((x) => sameId(x.id, u.account.id));
    if (m && m.username !== u.username) fail(`${what}: member ${show(u.account.id)} has username ${show(m.username)}, expected ${show(u.username)}`);
  }
}

/** An id of the same look as `id` that no conversation has. */
function unknownIdLike(id: Id): string {
  const s = String(id);
  if (UUID_RE.test(s)) return randomUUID();
  if (/^\d+$/.test(s)) return String(2_147_483_000 + randomInt(600));
  const chars = [...new Set(s.split(''))].join('') || ALNUM;
  return s.length > 6 ? s.slice(0, -6) + rand(6, chars) : rand(Math.max(s.length, 8), chars);
}

/** Collects failures of several steps and reports all of them. */
class Soft {
  private readonly errors: string[] = [];
  async step(label: string, fn: () => Promise<unknown> | unknown): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.errors.push(`[${label}] ${errText(err)}`);
    }
  }
  done(): void {
    if (this.errors.length) fail(this.errors.join(' | '));
  }
}

function errText(err: unknown): string {
  const s = err instanceof Error ? err.message : String(err);
  const flat = s.replace(/\s*\n\s*/g, ' ⏎ ');
  return flat.length > 2_000 ? `${flat.slice(0, 2_000)}…` : flat;
}

/** A predicate for `StreamClient.waitFor` that matches `schema` and `cond`. */
function ev<S extends z.ZodType>(schema: S, cond: (v: z.infer<S>) => boolean = () => true): (e: unknown) => boolean {
  return (e) => {
    const r = schema.safeParse(e);
    return r.success && cond(r.data);
  };
}

async function waitEvent<S extends z.ZodType>(
  s: StreamClient,
  schema: S,
  cond: (v: z.infer<S>) => boolean,
  description: string,
  opts: { timeoutMs?: number; from?: number } = {},
): Promise<{ value: z.infer<S>; index: number }> {
  const { event, index } = await s.waitFor(ev(schema, cond), description, opts);
  return { value: schema.parse(event), index };
}

async function createDirect(a: User, b: User, expected: number | number[] = 201): Promise<Conversation> {
  return expectJson(await a.client.createConversation({ kind: 'direct', members: [b.username] }), expected, ConversationSchema, 'create direct conversation');
}

async function createGroup(a: User, others: User[], title: string): Promise<Conversation> {
  return expectJson(
    await a.client.createConversation({ kind: 'group', members: others.map((o) => o.username), title }),
    201,
    ConversationSchema,
    'create group conversation',
  );
}

async function listItem(u: User, id: Id, what: string) {
  const list = await u.client.listOk();
  const item = list.find((c) => sameId(c.id, id));
  if (!item) fail(`${what}: conversation ${show(id)} missing from ${u.username}'s GET /v1/conversations (${list.length} items: ${show(list.map((c) => c.id))})`);
  return item;
}

/** Reads every sync page from `cursor` until `hasMore` is false (bounded). */
async function syncAll(u: User, cursor: string | number, limit?: number, maxPages = 30): Promise<{ events: SyncEvent[]; cursor: string | number; pages: number }> {
  const events: SyncEvent[] = [];
  let cur = cursor;
  for (let page = 1; page <= maxPages; page++) {
    const res = await u.client.sync({ cursor: cur, limit });
    const body = expectJson(res, 200, SyncSchema, `GET /v1/sync (page ${page})`);
    if (typeof body.hasMore !== 'boolean') fail(`GET /v1/sync with a cursor: expected a boolean hasMore, got ${show(body.hasMore)}`);
    if (limit !== undefined && body.events.length > limit) fail(`GET /v1/sync limit=${limit}: got ${body.events.length} events`);
    events.push(...body.events);
    cur = body.cursor;
    if (!body.hasMore) return { events, cursor: cur, pages: page };
    if (body.events.length === 0) fail(`GET /v1/sync: hasMore is true but the page is empty (cursor ${show(cur)})`);
  }
  fail(`GET /v1/sync: still hasMore after ${maxPages} pages`);
}

function messageEventsOf(events: SyncEvent[], convId: Id): Message[] {
  const out: Message[] = [];
  for (const e of events) if (e.type === 'message' && sameId(e.message.conversationId, convId)) out.push(e.message);
  return out;
}

async function sendMany(u: User, convId: Id, n: number, prefix: string): Promise<Message[]> {
  const out: Message[] = [];
  for (let i = 1; i <= n; i++) out.push((await u.client.sendOk(convId, `${prefix} ${i}`)).message);
  return out;
}

const VALIDATION = 'validation_failed';

/** A JSON object with any fields (for documents the contract only partly describes). */
const JsonObject = z.record(z.string(), z.unknown());

// ---------------------------------------------------------------------------------------------
// The checks

const checks: Check[] = [
  // --- operations endpoints
  {
    name: 'health: GET /healthz answers',
    async run({ anon }) {
      const res = await anon.healthz();
      expectStatus(res, [200, 204], 'GET /healthz');
    },
  },
  {
    name: 'health: GET /readyz answers 200 {state: ok|degraded, detail}',
    async run({ anon }) {
      const res = await anon.readyz();
      if (res.status === 503) fail(`GET /readyz: server says it cannot serve (503): ${show(res.text)}`);
      const body = expectJson(res, 200, JsonObject, 'GET /readyz');
      assert(body.state === 'ok' || body.state === 'degraded', `GET /readyz: expected state "ok" or "degraded", got ${show(body.state)}`);
      assert('detail' in body, `GET /readyz: expected a detail field, got ${show(body)}`);
    },
  },
  {
    name: 'metrics: GET /metrics is Prometheus text',
    async run({ anon }) {
      const res = await anon.metrics();
      expectStatus(res, 200, 'GET /metrics');
      assert(
        /^(text\/plain|application\/openmetrics-text)/i.test(res.contentType),
        `GET /metrics: expected content-type text/plain (Prometheus exposition) or application/openmetrics-text, got ${show(res.contentType)}`,
      );
      const lines = res.text.split('\n').filter((l) => l.trim() !== '');
      const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?\s+(\S+)(\s+-?\d+)?\s*$/;
      let samples = 0;
      let types = 0;
      const bad: string[] = [];
      for (const line of lines) {
        if (line.startsWith('#')) {
          if (/^# TYPE \S+ (counter|gauge|histogram|summary|untyped|info|stateset|gaugehistogram|unknown)\s*$/.test(line)) types++;
          continue;
        }
        const m = sample.exec(line);
        const v = m?.[2];
        if (!m || v === undefined || !(/^[+-]?(Inf|NaN)$/i.test(v) || Number.isFinite(Number(v)))) bad.push(line);
        else samples++;
      }
      assert(bad.length === 0, `GET /metrics: ${bad.length} lines are not Prometheus samples, e.g. ${show(bad.slice(0, 3))}`);
      assert(types > 0, 'GET /metrics: no "# TYPE name kind" line');
      assert(samples > 0, 'GET /metrics: no samples');
    },
  },
  {
    name: 'openapi: GET /v1/openapi.json is OpenAPI 3.1 and documents the API paths',
    async run(ctx) {
      const a = await ctx.user('oa');
      const res = await a.client.openapi();
      const doc = expectJson(res, 200, JsonObject, 'GET /v1/openapi.json');
      assert(typeof doc.openapi === 'string' && doc.openapi.startsWith('3.1'), `openapi.json: expected "openapi": "3.1.x", got ${show(doc.openapi)}`);
      assert(typeof doc.info === 'object' && doc.info !== null, `openapi.json: expected an info object, got ${show(doc.info)}`);
      const paths = doc.paths;
      assert(typeof paths === 'object' && paths !== null, `openapi.json: expected a paths object, got ${show(paths)}`);
      let prefix = '';
      const servers = doc.servers;
      if (Array.isArray(servers) && servers.length > 0) {
        const url = (servers[0] as { url?: unknown }).url;
        if (typeof url === 'string') prefix = new URL(url, 'http://x').pathname.replace(/\/+$/, '');
      }
      const norm = (p: string) => p.replace(/\{[^}]*\}/g, '{}');
      const table = new Map<string, Record<string, unknown>>();
      for (const [p, item] of Object.entries(paths as Record<string, unknown>)) {
        if (typeof item !== 'object' || item === null) continue;
        table.set(norm(p), item as Record<string, unknown>);
        if (prefix && !p.startsWith(prefix + '/')) table.set(norm(prefix + p), item as Record<string, unknown>);
      }
      const required: Array<[string, string]> = [
        ['post', '/v1/accounts'],
        ['post', '/v1/sessions'],
        ['delete', '/v1/sessions/current'],
        ['get', '/v1/me'],
        ['post', '/v1/conversations'],
        ['get', '/v1/conversations'],
        ['get', '/v1/conversations/{}'],
        ['post', '/v1/conversations/{}/messages'],
        ['get', '/v1/conversations/{}/messages'],
        ['post', '/v1/conversations/{}/read'],
        ['get', '/v1/sync'],
      ];
      const missing = required.filter(([m, p]) => !table.get(p)?.[m]).map(([m, p]) => `${m.toUpperCase()} ${p}`);
      assert(missing.length === 0, `openapi.json: operations missing: ${missing.join(', ')} (documented paths: ${show(Object.keys(paths as object))})`);
      const withoutBody = (
        [
          ['post', '/v1/accounts'],
          ['post', '/v1/sessions'],
          ['post', '/v1/conversations'],
          ['post', '/v1/conversations/{}/messages'],
        ] as const
      ).filter(([m, p]) => {
        const op = table.get(p)?.[m];
        return !(typeof op === 'object' && op !== null && 'requestBody' in op);
      });
      assert(withoutBody.length === 0, `openapi.json: these operations document no requestBody: ${withoutBody.map(([m, p]) => `${m.toUpperCase()} ${p}`).join(', ')}`);
    },
  },
  {
    name: 'status: GET /v1/status is public {state, components: [{name, state}], incidents}',
    async run({ anon }) {
      const body = expectJson(await anon.status(), 200, JsonObject, 'GET /v1/status (no token)');
      assert(typeof body.state === 'string', `GET /v1/status: expected a string state, got ${show(body.state)}`);
      assert(Array.isArray(body.components), `GET /v1/status: expected components array, got ${show(body.components)}`);
      for (const c of body.components as unknown[]) {
        const o = c as { name?: unknown; state?: unknown } | null;
        assert(o !== null && typeof o === 'object' && typeof o.name === 'string' && typeof o.state === 'string', `GET /v1/status: component ${show(c)} lacks string name/state`);
      }
      assert(Array.isArray(body.incidents), `GET /v1/status: expected incidents array, got ${show(body.incidents)}`);
    },
  },

  // --- accounts and sessions
  {
    name: 'accounts: register → 201 {id, username, displayName}, no secrets echoed',
    async run({ anon }) {
      const username = uname('reg');
      const pw = password();
      const res = await anon.register({ username, password: pw, displayName: 'Black Box Ann' });
      const acc = expectJson(res, 201, AccountSchema, 'POST /v1/accounts');
      eq(acc.username, username, 'register: username');
      eq(acc.displayName, 'Black Box Ann', 'register: displayName');
      assert(!res.text.includes(pw), 'register: the answer contains the password');
      const leaked = Object.keys(acc).filter((k) => /pass|hash|secret|token/i.test(k));
      assert(leaked.length === 0, `register: the answer has secret-looking fields ${show(leaked)}`);
      // without displayName
      const u2 = uname('reg');
      const acc2 = expectJson(await anon.register({ username: u2, password: password() }), 201, AccountSchema, 'POST /v1/accounts without displayName');
      eq(acc2.username, u2, 'register without displayName: username');
      assert(!sameId(acc.id, acc2.id), `two accounts got the same id ${show(acc.id)}`);
    },
  },
  {
    name: 'accounts: username length bounds 3 and 32, password length 8 accepted',
    async run({ anon }) {
      const soft = new Soft();
      await soft.step('3-char username', async () => {
        for (let attempt = 1; ; attempt++) {
          const username = rand(3);
          const res = await anon.register({ username, password: password() });
          if (res.status === 409 && attempt < 10) continue; // taken by an earlier run; try another
          eq(expectJson(res, 201, AccountSchema, `register ${show(username)}`).username, username, '3-char username');
          return;
        }
      });
      await soft.step('32-char username with _ . -', async () => {
        const username = `${rand(8)}_.-${rand(21)}`;
        assert(username.length === 32, 'test bug: username not 32 chars');
        eq(expectJson(await anon.register({ username, password: password() }), 201, AccountSchema, `register ${show(username)}`).username, username, '32-char username');
      });
      await soft.step('8-char password', async () => {
        const username = uname('pw8');
        const pw = `p${rand(7)}`;
        expectJson(await anon.register({ username, password: pw }), 201, AccountSchema, 'register with an 8-char password');
        expectJson(await anon.login({ username, password: pw }), 201, SessionSchema, 'login with the 8-char password');
      });
      soft.done();
    },
  },
  {
    name: 'accounts: taken username → 409 conflict (and the first password still works)',
    async run({ anon }) {
      const username = uname('dup');
      const pw = password();
      expectJson(await anon.register({ username, password: pw }), 201, AccountSchema, 'first register');
      expectProblem(await anon.register({ username, password: password() }), 409, 'conflict', 'second register of the same username');
      expectJson(await anon.login({ username, password: pw }), 201, SessionSchema, 'login with the first password after the 409');
    },
  },
  {
    name: 'accounts: invalid usernames → 400 validation_failed (examples + generated)',
    timeoutMs: 60_000,
    async run({ anon }) {
      const soft = new Soft();
      const examples: Array<[string, string]> = [
        ['2 chars', 'ab'],
        ['empty', ''],
        ['33 chars', `bb${rand(31)}`],
        ['uppercase', `BB${rand(8)}`],
        ['space', `bb ${rand(8)}`],
        ['non-ASCII', `bbé${rand(8)}`],
        ['slash', `bb/${rand(8)}`],
        ['at sign', `bb@${rand(8)}`],
      ];
      for (const [label, username] of examples) {
        await soft.step(`${label} ${show(username, 40)}`, async () =>
          expectProblem(await anon.register({ username, password: password() }), 400, VALIDATION, `register username ${show(username, 40)}`),
        );
      }
      await soft.step('generated (fast-check)', async () => {
        const valid = /^[a-z0-9_.-]{3,32}$/;
        const invalid = fc.oneof(
          fc.string({ maxLength: 40 }),
          fc.string({ unit: 'grapheme', maxLength: 12 }),
          fc.stringMatching(/^[a-z0-9_.-]{33,40}$/),
          fc.stringMatching(/^[a-z0-9_.-]{0,2}$/),
        ).filter((s) => !valid.test(s));
        await fc.assert(
          fc.asyncProperty(invalid, async (username) => {
            const res = await anon.register({ username, password: password() });
            expectProblem(res, 400, VALIDATION, `register username ${show(username)}`);
          }),
          { numRuns: 25, endOnFailure: true },
        );
      });
      soft.done();
    },
  },
  {
    name: 'accounts: short password → 400 validation_failed',
    async run({ anon }) {
      const soft = new Soft();
      for (const pw of ['short77', '', 'x']) {
        await soft.step(`password of ${pw.length} chars`, async () =>
          expectProblem(await anon.register({ username: uname('spw'), password: pw }), 400, VALIDATION, `register with a ${pw.length}-char password`),
        );
      }
      soft.done();
    },
  },
  {
    name: 'accounts: malformed JSON, wrong types, missing and unknown fields → 400',
    async run({ anon }) {
      const soft = new Soft();
      const cases: Array<[string, { raw?: string; json?: unknown }]> = [
        ['malformed JSON', { raw: '{"username": "bb_x", "password": ' }],
        ['empty body', { raw: '' }],
        ['array body', { json: [] }],
        ['username is a number', { json: { username: 12345, password: password() } }],
        ['password is a number', { json: { username: uname('typ'), password: 1234567890 } }],
        ['displayName is a number', { json: { username: uname('typ'), password: password(), displayName: 5 } }],
        ['missing password', { json: { username: uname('mis') } }],
        ['missing username', { json: { password: password() } }],
        ['empty object', { json: {} }],
      ];
      for (const [label, body] of cases) {
        await soft.step(label, async () =>
          expectProblem(await anon.request('POST', '/v1/accounts', { ...body, token: null }), 400, VALIDATION, `register with ${label}`),
        );
      }
      await soft.step('unknown field (and nothing created)', async () => {
        const username = uname('unk');
        const pw = password();
        expectProblem(await anon.request('POST', '/v1/accounts', { json: { username, password: pw, isAdmin: true }, token: null }), 400, VALIDATION, 'register with an unknown field');
        expectJson(await anon.register({ username, password: pw }), 201, AccountSchema, 'register the same username properly after the 400');
      });
      soft.done();
    },
  },
  {
    name: 'sessions: login → 201 {token, account}',
    async run({ anon }) {
      const username = uname('lin');
      const pw = password();
      const acc = expectJson(await anon.register({ username, password: pw, displayName: 'Lin' }), 201, AccountSchema, 'register');
      const s = expectJson(await anon.login({ username, password: pw }), 201, SessionSchema, 'POST /v1/sessions');
      assert(sameId(s.account.id, acc.id), `login: account.id ${show(s.account.id)} differs from registered id ${show(acc.id)}`);
      eq(s.account.username, username, 'login: account.username');
      eq(s.account.displayName, 'Lin', 'login: account.displayName');
    },
  },
  {
    name: 'sessions: wrong password / unknown user → 401 unauthorized',
    async run({ anon }) {
      const username = uname('bad');
      expectJson(await anon.register({ username, password: password() }), 201, AccountSchema, 'register');
      const soft = new Soft();
      await soft.step('wrong password', async () => expectProblem(await anon.login({ username, password: password() }), 401, 'unauthorized', 'login with a wrong password'));
      await soft.step('unknown user', async () => expectProblem(await anon.login({ username: uname('nobody'), password: password() }), 401, 'unauthorized', 'login as an unknown user'));
      soft.done();
    },
  },
  {
    name: 'me: GET /v1/me returns the caller',
    async run(ctx) {
      const u = await ctx.user('me', 'Me Myself');
      const me = expectJson(await u.client.me(), 200, AccountSchema, 'GET /v1/me');
      assert(sameId(me.id, u.account.id), `GET /v1/me: id ${show(me.id)}, expected ${show(u.account.id)}`);
      eq(me.username, u.username, 'GET /v1/me: username');
      eq(me.displayName, 'Me Myself', 'GET /v1/me: displayName');
    },
  },
  {
    name: 'sessions: logout (DELETE /v1/sessions/current) → 204, that token then 401, other sessions unaffected',
    async run(ctx) {
      const u = await ctx.user('out');
      const other = expectJson(await ctx.anon.login({ username: u.username, password: u.password }), 201, SessionSchema, 'second login');
      const res = await u.client.logout();
      expectStatus(res, 204, 'DELETE /v1/sessions/current');
      eq(res.text, '', 'logout: 204 body');
      expectProblem(await u.client.me(), 401, 'unauthorized', 'GET /v1/me with the logged-out token');
      expectProblem(await u.client.logout(), 401, 'unauthorized', 'second logout with the same token');
      expectJson(await u.client.withToken(other.token).me(), 200, AccountSchema, 'GET /v1/me with the other session of the same account');
    },
  },
  {
    name: 'auth: no token / bad token → 401 unauthorized on protected calls',
    async run(ctx) {
      const a = await ctx.user('au');
      const b = await ctx.user('au');
      const conv = await createDirect(a, b);
      const cid = encodeURIComponent(String(conv.id));
      const calls: Array<[string, string, unknown?]> = [
        ['GET', '/v1/me'],
        ['GET', '/v1/conversations'],
        ['POST', '/v1/conversations', { kind: 'direct', members: [b.username] }],
        ['GET', `/v1/conversations/${cid}`],
        ['POST', `/v1/conversations/${cid}/messages`, { clientMessageId: randomUUID(), body: 'x' }],
        ['GET', `/v1/conversations/${cid}/messages`],
        ['POST', `/v1/conversations/${cid}/read`, { seq: 0 }],
        ['GET', '/v1/sync'],
        ['DELETE', '/v1/sessions/current'],
      ];
      const auths: Array<[string, { token?: null; authorization?: string }]> = [
        ['no token', { token: null }],
        ['unknown bearer token', { authorization: `Bearer ${randomBytes(24).toString('hex')}` }],
        ['empty bearer', { authorization: 'Bearer ' }],
        ['Basic scheme', { authorization: `Basic ${Buffer.from(`${a.username}:${a.password}`).toString('base64')}` }],
      ];
      const soft = new Soft();
      for (const [method, path, json] of calls) {
        for (const [label, auth] of auths) {
          await soft.step(`${method} ${path} ${label}`, async () =>
            expectProblem(await ctx.anon.request(method, path, { json, ...auth }), 401, 'unauthorized', `${method} ${path} with ${label}`),
          );
        }
      }
      await soft.step('nothing was sent', async () => eq((await a.client.historyOk(conv.id)).messages.length, 0, 'messages after unauthenticated sends'));
      soft.done();
    },
  },

  // --- conversations
  {
    name: 'conversations: direct → 201, same pair again → 200 with the same id (from either side)',
    async run(ctx) {
      const a = await ctx.user('da', 'Direct A');
      const b = await ctx.user('db', 'Direct B');
      const c = await ctx.user('dc');
      const res = await a.client.createConversation({ kind: 'direct', members: [b.username] });
      const conv = expectJson(res, 201, ConversationSchema, 'first direct create');
      eq(conv.kind, 'direct', 'direct: kind');
      eq(conv.lastSeq, 0, 'direct: lastSeq of a new conversation');
      expectMembers(conv, [a, b], 'direct');
      const bm = conv.members.find((m) => sameId(m.id, b.account.id));
      eq(bm?.displayName, 'Direct B', 'direct: member displayName');
      const again = await createDirect(a, b, 200);
      assert(sameId(again.id, conv.id), `direct again from A: expected id ${show(conv.id)}, got ${show(again.id)}`);
      const reverse = await createDirect(b, a, 200);
      assert(sameId(reverse.id, conv.id), `direct from B's side: expected id ${show(conv.id)}, got ${show(reverse.id)}`);
      for (const u of [a, b]) {
        const got = expectJson(await u.client.getConversation(conv.id), 200, ConversationSchema, `GET conversation as ${u.username}`);
        assert(sameId(got.id, conv.id), `GET conversation: id ${show(got.id)}`);
        expectMembers(got, [a, b], `GET conversation as ${u.username}`);
      }
      const ac = await createDirect(a, c, 201);
      assert(!sameId(ac.id, conv.id), 'a direct conversation with a different partner got the same id');
    },
  },
  {
    name: 'conversations: group with title and members',
    async run(ctx) {
      const [a, b, c, d] = [await ctx.user('ga'), await ctx.user('gb'), await ctx.user('gc'), await ctx.user('gd')];
      const title = `Black box group ${rand(6)}`;
      const conv = await createGroup(a, [b, c], title);
      eq(conv.kind, 'group', 'group: kind');
      eq(conv.title, title, 'group: title');
      eq(conv.lastSeq, 0, 'group: lastSeq');
      expectMembers(conv, [a, b, c], 'group');
      for (const u of [a, b, c]) {
        const got = expectJson(await u.client.getConversation(conv.id), 200, ConversationSchema, `GET group as member ${u.username}`);
        eq(got.title, title, 'GET group: title');
        expectMembers(got, [a, b, c], 'GET group');
        await listItem(u, conv.id, `group in the list of ${u.username}`);
      }
      expectProblem(await d.client.getConversation(conv.id), 403, 'forbidden', 'GET group as a non-member');
      const dList = await d.client.listOk();
      assert(!dList.some((x) => sameId(x.id, conv.id)), 'a non-member sees the group in GET /v1/conversations');
      const second = await createGroup(a, [b, c], title);
      assert(!sameId(second.id, conv.id), 'a second group with the same members and title returned the first one (only direct conversations are deduplicated)');
    },
  },
  {
    name: 'conversations: list carries lastReadSeq, unread and lastMessage',
    async run(ctx) {
      const a = await ctx.user('la');
      const b = await ctx.user('lb');
      const c = await ctx.user('lc');
      const conv = await createDirect(a, b);
      const empty = await listItem(a, conv.id, 'list before any message');
      eq([empty.lastSeq, empty.lastReadSeq, empty.unread], [0, 0, 0], 'list before any message: [lastSeq, lastReadSeq, unread]');
      assert(empty.lastMessage === undefined || empty.lastMessage === null, `list before any message: expected no lastMessage, got ${show(empty.lastMessage)}`);
      expectMembers(empty, [a, b], 'list item');
      eq(empty.kind, 'direct', 'list item: kind');
      const sent = await sendMany(b, conv.id, 2, 'list');
      const last = sent[1];
      assert(last, 'test bug');
      const item = await listItem(a, conv.id, 'list after 2 messages from B');
      eq([item.lastSeq, item.lastReadSeq, item.unread], [2, 0, 2], "A's list after 2 messages from B: [lastSeq, lastReadSeq, unread]");
      assert(item.lastMessage, `A's list after 2 messages: expected lastMessage, got ${show(item.lastMessage)}`);
      sameMessage(item.lastMessage, last, 'lastMessage');
      const cList = await c.client.listOk();
      assert(!cList.some((x) => sameId(x.id, conv.id)), "an outsider's list contains the conversation");
    },
  },
  {
    name: 'conversations: create with bad kind, missing/mistyped members, unknown field, malformed JSON → 400',
    async run(ctx) {
      const a = await ctx.user('cv');
      const b = await ctx.user('cv');
      const soft = new Soft();
      const cases: Array<[string, { raw?: string; json?: unknown }]> = [
        ['kind "triad"', { json: { kind: 'triad', members: [b.username] } }],
        ['missing kind', { json: { members: [b.username] } }],
        ['missing members', { json: { kind: 'group', title: 't' } }],
        ['members is a string', { json: { kind: 'direct', members: b.username } }],
        ['members holds a number', { json: { kind: 'group', members: [42] } }],
        ['title is a number', { json: { kind: 'group', members: [b.username], title: 7 } }],
        ['unknown field', { json: { kind: 'direct', members: [b.username], pinned: true } }],
        ['malformed JSON', { raw: '{"kind": "direct", "members": [' }],
      ];
      for (const [label, body] of cases) {
        await soft.step(label, async () => expectProblem(await a.client.request('POST', '/v1/conversations', body), 400, VALIDATION, `create conversation with ${label}`));
      }
      await soft.step('no conversation was created', async () => eq((await a.client.listOk()).length, 0, "A's conversations after only invalid creates"));
      soft.done();
    },
  },
  {
    name: 'conversations: GET unknown conversation → 404 not_found',
    async run(ctx) {
      const a = await ctx.user('nf');
      const b = await ctx.user('nf');
      const conv = await createDirect(a, b);
      const unknown = unknownIdLike(conv.id);
      expectProblem(await a.client.getConversation(unknown), 404, 'not_found', `GET /v1/conversations/${unknown}`);
    },
  },
  {
    name: 'conversations: history, send and read on an unknown conversation → 404 not_found',
    async run(ctx) {
      const a = await ctx.user('nf');
      const b = await ctx.user('nf');
      const conv = await createDirect(a, b);
      const unknown = unknownIdLike(conv.id);
      const soft = new Soft();
      await soft.step('history', async () => expectProblem(await a.client.history(unknown), 404, 'not_found', 'history of an unknown conversation'));
      await soft.step('send', async () => expectProblem(await a.client.send(unknown, { clientMessageId: randomUUID(), body: 'hi' }), 404, 'not_found', 'send to an unknown conversation'));
      await soft.step('read', async () => expectProblem(await a.client.markRead(unknown, 1), 404, 'not_found', 'read receipt on an unknown conversation'));
      soft.done();
    },
  },
  {
    name: "conversations: someone else's conversation → 403 forbidden (GET, history, send, read)",
    async run(ctx) {
      const a = await ctx.user('fa');
      const b = await ctx.user('fb');
      const c = await ctx.user('fc');
      const conv = await createDirect(a, b);
      await a.client.sendOk(conv.id, 'private');
      const cmid = randomUUID();
      const soft = new Soft();
      await soft.step('GET conversation', async () => expectProblem(await c.client.getConversation(conv.id), 403, 'forbidden', 'GET a conversation one is not a member of'));
      await soft.step('history', async () => expectProblem(await c.client.history(conv.id), 403, 'forbidden', 'history of a conversation one is not a member of'));
      await soft.step('send', async () => expectProblem(await c.client.send(conv.id, { clientMessageId: cmid, body: 'intruder' }), 403, 'forbidden', 'send into a conversation one is not a member of'));
      await soft.step('read', async () => expectProblem(await c.client.markRead(conv.id, 1), 403, 'forbidden', 'read receipt on a conversation one is not a member of'));
      await soft.step('nothing was sent', async () => {
        const h = await a.client.historyOk(conv.id);
        expectSeqs(h.messages.map((m) => m.seq), [1], 'history after the forbidden send');
        assert(!h.messages.some((m) => m.clientMessageId === cmid), 'the forbidden message is in the history');
      });
      soft.done();
    },
  },

  // --- messages
  {
    name: 'messages: send → 201 {message}; resend of the same clientMessageId → 200 with the same message',
    async run(ctx) {
      const a = await ctx.user('sa');
      const b = await ctx.user('sb');
      const conv = await createDirect(a, b);
      const cmid = randomUUID();
      const body = `héllo wörld 👋 ${rand(6)} "quoted" <b>not html</b>`;
      const res = await a.client.send(conv.id, { clientMessageId: cmid, body });
      const m = expectJson(res, 201, SendAnswerSchema, 'first send').message;
      assert(sameId(m.conversationId, conv.id), `message.conversationId ${show(m.conversationId)}, expected ${show(conv.id)}`);
      eq(m.seq, 1, 'first message seq');
      assert(sameId(m.senderId, a.account.id), `message.senderId ${show(m.senderId)}, expected ${show(a.account.id)}`);
      eq(m.clientMessageId, cmid, 'message.clientMessageId');
      eq(m.body, body, 'message.body (exact round trip)');
      const again = expectJson(await a.client.send(conv.id, { clientMessageId: cmid, body }), 200, SendAnswerSchema, 'resend with the same clientMessageId').message;
      sameMessage(again, m, 'resend answer');
      const mb = (await b.client.sendOk(conv.id, 'reply')).message;
      eq(mb.seq, 2, "B's reply seq");
      const got = expectJson(await a.client.getConversation(conv.id), 200, ConversationSchema, 'GET conversation');
      eq(got.lastSeq, 2, 'conversation lastSeq after 2 messages');
      const h = await b.client.historyOk(conv.id);
      expectSeqs(h.messages.map((x) => x.seq), [1, 2], 'history');
      const h0 = h.messages[0];
      assert(h0, 'test bug');
      sameMessage(h0, m, 'history[0]');
    },
  },
  {
    name: 'messages: 20 concurrent identical sends (same clientMessageId) → one message',
    async run(ctx) {
      const a = await ctx.user('ia');
      const b = await ctx.user('ib');
      const conv = await createDirect(a, b);
      const cmid = randomUUID();
      const answers = await Promise.all(Array.from({ length: 20 }, () => a.client.send(conv.id, { clientMessageId: cmid, body: 'once' })));
      const msgs = answers.map((r, i) => expectJson(r, [200, 201], SendAnswerSchema, `concurrent send #${i + 1}`).message);
      const ids = new Set(msgs.map((m) => String(m.id)));
      const seqs = new Set(msgs.map((m) => m.seq));
      assert(ids.size === 1 && seqs.size === 1, `20 identical sends answered ${ids.size} ids ${show([...ids])} and seqs ${show([...seqs])}; expected one`);
      const h = await a.client.historyOk(conv.id);
      expectSeqs(h.messages.map((m) => m.seq), [1], 'history after 20 identical sends');
      const m0 = msgs[0];
      const h0 = h.messages[0];
      assert(m0 && h0, 'test bug');
      sameMessage(h0, m0, 'stored message');
    },
  },
  {
    name: 'messages: 20 concurrent identical sends → exactly one 201, the rest 200',
    async run(ctx) {
      const a = await ctx.user('ia');
      const b = await ctx.user('ib');
      const conv = await createDirect(a, b);
      const cmid = randomUUID();
      const answers = await Promise.all(Array.from({ length: 20 }, () => a.client.send(conv.id, { clientMessageId: cmid, body: 'once' })));
      const counts = new Map<number, number>();
      for (const r of answers) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
      const summary = show(Object.fromEntries(counts));
      assert(counts.get(201) === 1 && counts.get(200) === 19, `expected one 201 and nineteen 200, got statuses ${summary}`);
    },
  },
  {
    name: 'messages: 60 concurrent distinct sends after 1 message → seqs exactly 1..61, no gap, no duplicate',
    timeoutMs: 60_000,
    async run(ctx) {
      const a = await ctx.user('ca');
      const b = await ctx.user('cb');
      const conv = await createDirect(a, b);
      const first = (await a.client.sendOk(conv.id, 'first')).message;
      eq(first.seq, 1, 'first message seq');
      const cmids = Array.from({ length: 60 }, () => randomUUID());
      const answers = await Promise.all(cmids.map((cmid, i) => (i % 2 === 0 ? a : b).client.send(conv.id, { clientMessageId: cmid, body: `c${i}` })));
      const sent = answers.map((r, i) => expectJson(r, 201, SendAnswerSchema, `concurrent send #${i + 1}`).message);
      sent.forEach((m, i) => eq(m.clientMessageId, cmids[i], `answer #${i + 1} clientMessageId`));
      expectSeqs(sent.map((m) => m.seq).sort((x, y) => x - y), range(2, 61), 'seqs answered to the 60 concurrent sends');
      const h = await a.client.historyOk(conv.id, { afterSeq: 0, limit: 200 });
      expectSeqs(h.messages.map((m) => m.seq), range(1, 61), 'history after the concurrent sends');
      eq(h.hasMore, false, 'history hasMore');
      const bySeq = new Map(h.messages.map((m) => [m.seq, m]));
      for (const m of sent) {
        const stored = bySeq.get(m.seq);
        assert(stored, `seq ${m.seq} missing from history`);
        sameMessage(stored, m, `stored message seq ${m.seq}`);
      }
      eq(expectJson(await b.client.getConversation(conv.id), 200, ConversationSchema, 'GET conversation').lastSeq, 61, 'lastSeq');
    },
  },
  {
    name: 'messages: body of 1 and 4000 chars accepted; empty and 4001 chars → 400',
    async run(ctx) {
      const a = await ctx.user('bl');
      const b = await ctx.user('bl');
      const conv = await createDirect(a, b);
      const soft = new Soft();
      await soft.step('1 char', async () => eq((await a.client.sendOk(conv.id, 'x')).message.body, 'x', '1-char body'));
      await soft.step('4000 chars', async () => {
        const body = rand(4000);
        eq((await a.client.sendOk(conv.id, body)).message.body.length, 4000, '4000-char body length');
      });
      await soft.step('empty', async () => expectProblem(await a.client.send(conv.id, { clientMessageId: randomUUID(), body: '' }), 400, VALIDATION, 'send an empty body'));
      await soft.step('4001 chars', async () => expectProblem(await a.client.send(conv.id, { clientMessageId: randomUUID(), body: rand(4001) }), 400, VALIDATION, 'send a 4001-char body'));
      await soft.step('no message from the rejected sends', async () => {
        eq(expectJson(await a.client.getConversation(conv.id), 200, ConversationSchema, 'GET conversation').lastSeq, 2, 'lastSeq after 2 accepted and 2 rejected sends');
      });
      soft.done();
    },
  },
  {
    name: 'messages: malformed JSON, wrong types, unknown/missing fields, bad uuid → 400 and nothing stored',
    async run(ctx) {
      const a = await ctx.user('mv');
      const b = await ctx.user('mv');
      const conv = await createDirect(a, b);
      const path = `/v1/conversations/${encodeURIComponent(String(conv.id))}/messages`;
      const cases: Array<[string, { raw?: string; json?: unknown }]> = [
        ['malformed JSON', { raw: '{"clientMessageId": "' }],
        ['empty request body', { raw: '' }],
        ['array body', { json: [randomUUID(), 'hi'] }],
        ['body is a number', { json: { clientMessageId: randomUUID(), body: 5 } }],
        ['body is null', { json: { clientMessageId: randomUUID(), body: null } }],
        ['clientMessageId is a number', { json: { clientMessageId: 5, body: 'hi' } }],
        ['unknown field', { json: { clientMessageId: randomUUID(), body: 'hi', priority: 'high' } }],
        ['missing body', { json: { clientMessageId: randomUUID() } }],
        ['missing clientMessageId', { json: { body: 'hi' } }],
        ['clientMessageId not a uuid', { json: { clientMessageId: 'not-a-uuid', body: 'hi' } }],
        ['clientMessageId almost a uuid', { json: { clientMessageId: randomUUID().slice(0, -1) + 'g', body: 'hi' } }],
      ];
      const soft = new Soft();
      for (const [label, body] of cases) {
        await soft.step(label, async () => expectProblem(await a.client.request('POST', path, body), 400, VALIDATION, `send with ${label}`));
      }
      await soft.step('nothing stored', async () => {
        const h = await a.client.historyOk(conv.id);
        eq(h.messages.length, 0, 'messages stored by invalid sends');
      });
      soft.done();
    },
  },
  {
    name: 'history: paging with limit, afterSeq, beforeSeq and hasMore, ascending',
    async run(ctx) {
      const a = await ctx.user('ha');
      const b = await ctx.user('hb');
      const conv = await createDirect(a, b);
      const sent = await sendMany(a, conv.id, 7, 'page');
      const soft = new Soft();
      const page = async (q: { afterSeq?: number; beforeSeq?: number; limit?: number }, seqs: number[], hasMore: boolean) => {
        const h = await b.client.historyOk(conv.id, q);
        expectSeqs(h.messages.map((m) => m.seq), seqs, `history ${show(q)}`);
        eq(h.hasMore, hasMore, `history ${show(q)} hasMore`);
        for (const m of h.messages) {
          const s = sent[m.seq - 1];
          if (s) sameMessage(m, s, `history ${show(q)} seq ${m.seq}`);
        }
      };
      await soft.step('no parameters', () => page({}, range(1, 7), false));
      await soft.step('afterSeq=0 limit=3', () => page({ afterSeq: 0, limit: 3 }, [1, 2, 3], true));
      await soft.step('afterSeq=3 limit=3', () => page({ afterSeq: 3, limit: 3 }, [4, 5, 6], true));
      await soft.step('afterSeq=6 limit=3', () => page({ afterSeq: 6, limit: 3 }, [7], false));
      await soft.step('afterSeq=7', () => page({ afterSeq: 7 }, [], false));
      await soft.step('beforeSeq=5', () => page({ beforeSeq: 5 }, [1, 2, 3, 4], false));
      await soft.step('afterSeq=2 beforeSeq=6', () => page({ afterSeq: 2, beforeSeq: 6 }, [3, 4, 5], false));
      await soft.step('beforeSeq=5 limit=2 (a contiguous window below 5)', async () => {
        const h = await b.client.historyOk(conv.id, { beforeSeq: 5, limit: 2 });
        const seqs = h.messages.map((m) => m.seq);
        assert(seqs.length === 2 && isContiguousAscending(seqs) && seqs.every((s) => s >= 1 && s <= 4), `history beforeSeq=5 limit=2: expected 2 ascending contiguous seqs below 5 (e.g. [3,4]), got ${fmtSeqs(seqs)}`);
        eq(h.hasMore, true, 'history beforeSeq=5 limit=2 hasMore');
      });
      await soft.step('limit=3 only (a contiguous window)', async () => {
        const h = await b.client.historyOk(conv.id, { limit: 3 });
        const seqs = h.messages.map((m) => m.seq);
        assert(seqs.length === 3 && isContiguousAscending(seqs) && seqs.every((s) => s >= 1 && s <= 7), `history limit=3: expected 3 ascending contiguous seqs, got ${fmtSeqs(seqs)}`);
        eq(h.hasMore, true, 'history limit=3 hasMore');
      });
      soft.done();
    },
  },
  {
    name: 'history: default limit 50, limit=200 accepted, limit>200 and non-numeric limit → 400',
    timeoutMs: 60_000,
    async run(ctx) {
      const a = await ctx.user('hl');
      const b = await ctx.user('hl');
      const conv = await createDirect(a, b);
      const answers = await Promise.all(Array.from({ length: 51 }, (_, i) => a.client.send(conv.id, { clientMessageId: randomUUID(), body: `m${i}` })));
      answers.forEach((r, i) => expectJson(r, 201, SendAnswerSchema, `send #${i + 1}`));
      const soft = new Soft();
      await soft.step('default limit', async () => {
        const h = await a.client.historyOk(conv.id);
        const seqs = h.messages.map((m) => m.seq);
        assert(seqs.length === 50 && isContiguousAscending(seqs), `history without limit: expected 50 ascending contiguous messages, got ${fmtSeqs(seqs)}`);
        eq(h.hasMore, true, 'history without limit (51 messages) hasMore');
      });
      await soft.step('limit=200', async () => {
        const h = await a.client.historyOk(conv.id, { limit: 200 });
        expectSeqs(h.messages.map((m) => m.seq), range(1, 51), 'history limit=200');
        eq(h.hasMore, false, 'history limit=200 hasMore');
      });
      for (const limit of [201, 1000, 'abc']) {
        await soft.step(`limit=${limit}`, async () => expectProblem(await a.client.history(conv.id, { limit }), 400, VALIDATION, `history limit=${limit}`));
      }
      await soft.step('afterSeq=abc', async () =>
        expectProblem(await a.client.request('GET', `/v1/conversations/${encodeURIComponent(String(conv.id))}/messages`, { query: { afterSeq: 'abc' } }), 400, VALIDATION, 'history afterSeq=abc'),
      );
      soft.done();
    },
  },

  // --- read receipts
  {
    name: 'read: POST read → 204; a lower seq later never moves it back (list and sync read events)',
    async run(ctx) {
      const a = await ctx.user('ra');
      const b = await ctx.user('rb');
      const conv = await createDirect(a, b);
      await sendMany(b, conv.id, 3, 'unread');
      const bCursor = (await b.client.syncOk()).cursor;
      const state = async (what: string) => {
        const it = await listItem(a, conv.id, what);
        return [it.lastReadSeq, it.unread];
      };
      eq(await state('before reading'), [0, 3], "A's [lastReadSeq, unread] before reading");
      const r1 = await a.client.markRead(conv.id, 2);
      expectStatus(r1, 204, 'POST read seq 2');
      eq(r1.text, '', 'POST read: 204 body');
      eq(await state('after read 2'), [2, 1], "A's [lastReadSeq, unread] after read 2");
      expectStatus(await a.client.markRead(conv.id, 1), 204, 'POST read seq 1 (lower)');
      eq(await state('after read 1'), [2, 1], "A's [lastReadSeq, unread] after a lower read 1 (must not move back)");
      expectStatus(await a.client.markRead(conv.id, 3), 204, 'POST read seq 3');
      eq(await state('after read 3'), [3, 0], "A's [lastReadSeq, unread] after read 3");
      expectStatus(await a.client.markRead(conv.id, 2), 204, 'POST read seq 2 after 3');
      eq(await state('after read 2 again'), [3, 0], "A's [lastReadSeq, unread] after a lower read 2");
      const { events } = await syncAll(b, bCursor);
      const reads = events.filter((e) => e.type === 'read' && sameId(e.conversationId, conv.id) && sameId(e.accountId, a.account.id)).map((e) => (e.type === 'read' ? e.seq : -1));
      assert(reads.length > 0, `B's sync has no read event of A; events: ${show(events)}`);
      const backwards = reads.some((s, i) => i > 0 && s < (reads[i - 1] ?? 0));
      assert(!backwards && !reads.includes(1) && reads[reads.length - 1] === 3, `B's sync read events of A carry seqs ${show(reads)}; expected non-decreasing, ending at 3, never 1`);
    },
  },
  {
    name: 'read: invalid read bodies → 400',
    async run(ctx) {
      const a = await ctx.user('rv');
      const b = await ctx.user('rv');
      const conv = await createDirect(a, b);
      await a.client.sendOk(conv.id, 'x');
      const path = `/v1/conversations/${encodeURIComponent(String(conv.id))}/read`;
      const soft = new Soft();
      const cases: Array<[string, { raw?: string; json?: unknown }]> = [
        ['seq is a string', { json: { seq: 'one' } }],
        ['missing seq', { json: {} }],
        ['malformed JSON', { raw: '{"seq": ' }],
        ['unknown field', { json: { seq: 1, when: 'now' } }],
      ];
      for (const [label, body] of cases) {
        await soft.step(label, async () => expectProblem(await a.client.request('POST', path, body), 400, VALIDATION, `read with ${label}`));
      }
      soft.done();
    },
  },

  // --- sync
  {
    name: 'sync: no cursor → {events: [], cursor}; that cursor → nothing new; no token → 401',
    async run(ctx) {
      const u = await ctx.user('se');
      const first = await u.client.syncOk();
      eq(first.events, [], 'sync without cursor: events');
      const next = await syncAll(u, first.cursor);
      eq(next.events, [], 'sync from the fresh cursor with nothing happened: events');
      expectProblem(await ctx.anon.sync(), 401, 'unauthorized', 'sync without a token');
    },
  },
  {
    name: 'sync: conversation, message and read events in order; cursor advances; an old cursor replays',
    async run(ctx) {
      const a = await ctx.user('sya');
      const b = await ctx.user('syb');
      const c0 = (await b.client.syncOk()).cursor;
      const conv = await createDirect(a, b);
      const sent = await sendMany(a, conv.id, 3, 'sync');
      const s1 = await syncAll(b, c0);
      const convIdx = s1.events.findIndex((e) => e.type === 'conversation' && sameId(e.conversation.id, conv.id));
      assert(convIdx >= 0, `B's sync after being added: no conversation event for ${show(conv.id)}; events ${show(s1.events)}`);
      const firstMsgIdx = s1.events.findIndex((e) => e.type === 'message' && sameId(e.message.conversationId, conv.id));
      assert(firstMsgIdx > convIdx, `B's sync: the conversation event (index ${convIdx}) must come before its first message event (index ${firstMsgIdx}), oldest first`);
      const msgs = messageEventsOf(s1.events, conv.id);
      expectSeqs(msgs.map((m) => m.seq), [1, 2, 3], "B's sync message events");
      msgs.forEach((m, i) => {
        const s = sent[i];
        if (s) sameMessage(m, s, `sync message event ${i + 1}`);
      });
      const c1 = s1.cursor;
      assert(String(c1) !== String(c0), `sync cursor did not advance after events: still ${show(c1)}`);
      const s2 = await syncAll(b, c1);
      eq(s2.events, [], 'sync from the advanced cursor with nothing new: events');

      // B received A's messages, so B's receipt moves (a sender has read up to their own message).
      expectStatus(await b.client.markRead(conv.id, 2), 204, 'B reads seq 2');
      const s3 = await syncAll(b, c1);
      const read = s3.events.find((e) => e.type === 'read' && sameId(e.conversationId, conv.id) && sameId(e.accountId, b.account.id));
      assert(read && read.type === 'read' && read.seq === 2, `B's sync after B read 2: expected a read event {conversationId, accountId: B, seq: 2}, got ${show(s3.events)}`);
      eq(messageEventsOf(s3.events, conv.id).length, 0, 'message events repeated after the cursor');

      const m4 = (await a.client.sendOk(conv.id, 'sync 4')).message;
      const s4 = await syncAll(b, s3.cursor);
      expectSeqs(messageEventsOf(s4.events, conv.id).map((m) => m.seq), [4], 'sync from the latest cursor after one more message');

      const replay = await syncAll(b, c0);
      const replayed = messageEventsOf(replay.events, conv.id);
      expectSeqs(replayed.map((m) => m.seq), [1, 2, 3, 4], 'replay from the oldest cursor: message seqs');
      [...sent, m4].forEach((s, i) => {
        const r = replayed[i];
        if (r) sameMessage(r, s, `replayed message ${i + 1}`);
      });
      assert(replay.events.some((e) => e.type === 'read' && sameId(e.conversationId, conv.id)), 'replay from the oldest cursor lacks the read event');
      assert(replay.events.some((e) => e.type === 'conversation' && sameId(e.conversation.id, conv.id)), 'replay from the oldest cursor lacks the conversation event');
    },
  },
  {
    name: 'sync: paging with limit and hasMore delivers every event once, in order',
    async run(ctx) {
      const a = await ctx.user('spa');
      const b = await ctx.user('spb');
      const c0 = (await b.client.syncOk()).cursor;
      const conv = await createDirect(a, b);
      await sendMany(a, conv.id, 5, 'paged');
      const first = expectJson(await b.client.sync({ cursor: c0, limit: 2 }), 200, SyncSchema, 'sync limit=2 first page');
      assert(first.events.length <= 2, `sync limit=2: got ${first.events.length} events`);
      eq(first.hasMore, true, 'sync limit=2 with ≥6 events: hasMore');
      const paged = await syncAll(b, c0, 2);
      assert(paged.pages >= 3, `sync limit=2 over ≥6 events took only ${paged.pages} pages`);
      expectSeqs(messageEventsOf(paged.events, conv.id).map((m) => m.seq), [1, 2, 3, 4, 5], 'paged sync message seqs');
      eq(paged.events.filter((e) => e.type === 'conversation' && sameId(e.conversation.id, conv.id)).length >= 1, true, 'paged sync has the conversation event');
      const whole = await syncAll(b, c0);
      eq(paged.events, whole.events, 'paged sync events versus one unpaged sync');
    },
  },

  // --- WebSocket
  {
    name: 'ws: connect with ?token= and with a bearer header; each socket acts as its account',
    async run(ctx) {
      const a = await ctx.user('wc');
      const b = await ctx.user('wc');
      const conv = await createDirect(a, b);
      for (const auth of ['query', 'header'] as const) {
        const s = await ctx.socket(a, auth);
        const cmid = s.send(conv.id, `via ${auth}`);
        const { value } = await waitEvent(s, AckEventSchema, (v) => v.clientMessageId === cmid, `ack on the socket authenticated via ${auth}`);
        assert(sameId(value.message.senderId, a.account.id), `ack via ${auth}: senderId ${show(value.message.senderId)}, expected ${show(a.account.id)}`);
      }
    },
  },
  {
    name: 'ws: a bad, missing or logged-out token is refused',
    async run(ctx) {
      const a = await ctx.user('wr');
      const loggedOut = expectJson(await ctx.anon.login({ username: a.username, password: a.password }), 201, SessionSchema, 'extra login');
      expectStatus(await a.client.withToken(loggedOut.token).logout(), 204, 'logout');
      const soft = new Soft();
      const attempts: Array<[string, string | null, 'query' | 'header', number[]]> = [
        ['bad token via ?token=', randomBytes(24).toString('hex'), 'query', [401, 403]],
        ['bad token via header', randomBytes(24).toString('hex'), 'header', [401, 403]],
        ['no token', null, 'query', [400, 401, 403]],
        ['logged-out token', loggedOut.token, 'query', [401, 403]],
      ];
      for (const [label, token, auth, allowed] of attempts) {
        await soft.step(label, async () => {
          const out = await a.client.tryConnect({ token, auth });
          if (out.ok) {
            ctx.defer(() => out.stream.close());
            const closed = await out.stream.waitClosed(5_000);
            assert(closed, `${label}: the socket was accepted and stayed open for 5 s (received ${show(out.stream.received)})`);
            return;
          }
          if (out.statusCode !== undefined) {
            assert(allowed.includes(out.statusCode), `${label}: upgrade refused with HTTP ${out.statusCode}, expected ${allowed.join(' or ')}`);
          }
          assert(!/ECONNREFUSED|no answer/.test(out.reason), `${label}: could not reach the server at all: ${out.reason}`);
        });
      }
      soft.done();
    },
  },
  {
    name: "ws: send over the socket → ack with the message; the other member's socket receives it",
    async run(ctx) {
      const a = await ctx.user('wsa');
      const b = await ctx.user('wsb');
      const conv = await createDirect(a, b);
      const sa = await ctx.socket(a, 'query');
      const sb = await ctx.socket(b, 'header');
      const body = `over the socket ${rand(6)}`;
      const cmid = sa.send(conv.id, body);
      const { value: ack } = await waitEvent(sa, AckEventSchema, (v) => v.clientMessageId === cmid, `ack for ${cmid}`);
      const m = ack.message;
      eq([m.seq, m.body, m.clientMessageId], [1, body, cmid], 'ack message [seq, body, clientMessageId]');
      assert(sameId(m.conversationId, conv.id) && sameId(m.senderId, a.account.id), `ack message conversationId/senderId wrong: ${show(m)}`);
      const { value: got } = await waitEvent(sb, MessageEventSchema, (v) => sameId(v.message.id, m.id), "the message event on B's socket");
      sameMessage(got.message, m, "B's message event");
      const h = await b.client.historyOk(conv.id);
      expectSeqs(h.messages.map((x) => x.seq), [1], 'history after a socket send');
      const h0 = h.messages[0];
      assert(h0, 'test bug');
      sameMessage(h0, m, 'stored socket message');
    },
  },
  {
    name: "ws: an HTTP send is pushed to the other member's socket",
    async run(ctx) {
      const a = await ctx.user('wha');
      const b = await ctx.user('whb');
      const conv = await createDirect(a, b);
      const sb = await ctx.socket(b);
      const { message } = await a.client.sendOk(conv.id, 'pushed');
      const { value } = await waitEvent(sb, MessageEventSchema, (v) => sameId(v.message.id, message.id), "the message event on B's socket");
      sameMessage(value.message, message, 'pushed message');
    },
  },
  {
    name: 'ws: typing → the other member gets typing',
    async run(ctx) {
      const a = await ctx.user('wta');
      const b = await ctx.user('wtb');
      const conv = await createDirect(a, b);
      const sa = await ctx.socket(a);
      const sb = await ctx.socket(b);
      sa.typing(conv.id);
      await waitEvent(
        sb,
        TypingEventSchema,
        (v) => sameId(v.conversationId, conv.id) && sameId(v.accountId, a.account.id),
        `typing {conversationId: ${show(conv.id)}, accountId: ${show(a.account.id)}} on B's socket`,
      );
    },
  },
  {
    name: 'ws: read over the socket → the other member gets read; the receipt is stored',
    async run(ctx) {
      const a = await ctx.user('wra');
      const b = await ctx.user('wrb');
      const conv = await createDirect(a, b);
      await sendMany(b, conv.id, 2, 'to be read');
      const sa = await ctx.socket(a);
      const sb = await ctx.socket(b);
      sa.read(conv.id, 2);
      await waitEvent(
        sb,
        ReadEventSchema,
        (v) => sameId(v.conversationId, conv.id) && sameId(v.accountId, a.account.id) && v.seq === 2,
        `read {accountId: A, seq: 2} on B's socket`,
      );
      let last: unknown;
      for (let i = 0; i < 20; i++) {
        const it = await listItem(a, conv.id, 'after a socket read');
        last = [it.lastReadSeq, it.unread];
        if (isDeepStrictEqual(last, [2, 0])) return;
        await sleep(150);
      }
      fail(`after a socket read of seq 2, A's [lastReadSeq, unread] is ${show(last)}, expected [2,0]`);
    },
  },
  {
    name: 'ws: HTTP read receipts are pushed as read events and never go backwards',
    async run(ctx) {
      const a = await ctx.user('wpa');
      const b = await ctx.user('wpb');
      const conv = await createDirect(a, b);
      await sendMany(b, conv.id, 3, 'r');
      const sb = await ctx.socket(b);
      const isA = (v: { conversationId: Id; accountId: Id }) => sameId(v.conversationId, conv.id) && sameId(v.accountId, a.account.id);
      expectStatus(await a.client.markRead(conv.id, 2), 204, 'read 2');
      const first = await waitEvent(sb, ReadEventSchema, (v) => isA(v) && v.seq === 2, 'read seq 2 on B\'s socket');
      expectStatus(await a.client.markRead(conv.id, 1), 204, 'read 1 (lower)');
      expectStatus(await a.client.markRead(conv.id, 3), 204, 'read 3');
      const third = await waitEvent(sb, ReadEventSchema, (v) => isA(v) && v.seq === 3, "read seq 3 on B's socket", { from: first.index + 1 });
      const between = sb.received
        .slice(first.index + 1, third.index)
        .map((e) => ReadEventSchema.safeParse(e))
        .filter((r) => r.success && isA(r.data))
        .map((r) => (r.success ? r.data.seq : -1));
      assert(between.every((s) => s >= 2), `read events of A between seq 2 and seq 3 went backwards: ${show(between)}`);
    },
  },
  {
    name: 'ws: a garbage frame → error event, and the socket stays usable',
    async run(ctx) {
      const a = await ctx.user('wga');
      const b = await ctx.user('wgb');
      const conv = await createDirect(a, b);
      const s = await ctx.socket(a);
      s.sendRaw('this is not JSON {');
      const e1 = await waitEvent(s, ErrorEventSchema, () => true, 'an error event {type: "error", code, detail} for a non-JSON frame');
      s.sendRaw(JSON.stringify({ type: 'dance', conversationId: conv.id }));
      await waitEvent(s, ErrorEventSchema, () => true, 'an error event for an unknown frame type', { from: e1.index + 1 });
      assert(s.isOpen, `the socket closed after garbage (${show(s.closed)})`);
      const cmid = s.send(conv.id, 'still here');
      const { value } = await waitEvent(s, AckEventSchema, (v) => v.clientMessageId === cmid, 'an ack for a valid send after garbage');
      eq(value.message.body, 'still here', 'ack body after garbage');
    },
  },
  {
    name: 'ws: an invalid or forbidden send → error with its clientMessageId, nothing stored',
    async run(ctx) {
      const a = await ctx.user('wia');
      const b = await ctx.user('wib');
      const c = await ctx.user('wic');
      const conv = await createDirect(a, b);
      const foreign = await createDirect(b, c);
      const s = await ctx.socket(a);
      const soft = new Soft();
      await soft.step('empty body', async () => {
        const cmid = s.send(conv.id, '');
        const { value } = await waitEvent(s, ErrorEventSchema, (v) => v.clientMessageId === cmid, `error for clientMessageId ${cmid} (empty body)`);
        eq(value.code, VALIDATION, 'socket error code for an empty body');
      });
      await soft.step('4001-char body', async () => {
        const cmid = s.send(conv.id, rand(4001));
        const { value } = await waitEvent(s, ErrorEventSchema, (v) => v.clientMessageId === cmid, `error for clientMessageId ${cmid} (4001 chars)`);
        eq(value.code, VALIDATION, 'socket error code for a 4001-char body');
      });
      await soft.step('not a member', async () => {
        const cmid = s.send(foreign.id, 'intruder');
        const { value } = await waitEvent(s, ErrorEventSchema, (v) => v.clientMessageId === cmid, `error for clientMessageId ${cmid} (not a member)`);
        eq(value.code, 'forbidden', 'socket error code for a send into a foreign conversation');
      });
      await soft.step('clientMessageId not a uuid', async () => {
        const from = s.received.length;
        s.send(conv.id, 'bad id', 'not-a-uuid');
        const { value } = await waitEvent(s, ErrorEventSchema, () => true, 'an error for a send with a non-uuid clientMessageId', { from });
        eq(value.code, VALIDATION, 'socket error code for a non-uuid clientMessageId');
      });
      await soft.step('nothing stored', async () => {
        eq((await a.client.historyOk(conv.id)).messages.length, 0, 'messages stored by invalid socket sends');
        eq((await b.client.historyOk(foreign.id)).messages.length, 0, 'messages stored in the foreign conversation');
      });
      await soft.step('still usable', async () => {
        const cmid = s.send(conv.id, 'valid');
        await waitEvent(s, AckEventSchema, (v) => v.clientMessageId === cmid, 'an ack after the errors');
      });
      soft.done();
    },
  },
  {
    name: 'ws: resending a clientMessageId (socket or HTTP) returns the same message',
    async run(ctx) {
      const a = await ctx.user('wda');
      const b = await ctx.user('wdb');
      const conv = await createDirect(a, b);
      const s = await ctx.socket(a);
      const cmid = randomUUID();
      s.send(conv.id, 'twice', cmid);
      s.send(conv.id, 'twice', cmid);
      const ack1 = await waitEvent(s, AckEventSchema, (v) => v.clientMessageId === cmid, 'first ack');
      const ack2 = await waitEvent(s, AckEventSchema, (v) => v.clientMessageId === cmid, 'second ack for the resend', { from: ack1.index + 1 });
      sameMessage(ack2.value.message, ack1.value.message, 'second socket ack');
      const viaHttp = await a.client.send(conv.id, { clientMessageId: cmid, body: 'twice' });
      sameMessage(expectJson(viaHttp, 200, SendAnswerSchema, 'HTTP resend of a socket-sent clientMessageId').message, ack1.value.message, 'HTTP resend answer');
      // and the other way round: HTTP first, then the socket
      const first = (await a.client.sendOk(conv.id, 'http first')).message;
      s.send(conv.id, 'http first', first.clientMessageId);
      const ack3 = await waitEvent(s, AckEventSchema, (v) => v.clientMessageId === first.clientMessageId, 'ack for a socket resend of an HTTP-sent clientMessageId');
      sameMessage(ack3.value.message, first, 'socket resend answer');
      const h = await a.client.historyOk(conv.id);
      expectSeqs(h.messages.map((m) => m.seq), [1, 2], 'history after resends');
    },
  },
  {
    name: 'ws: being added to a new conversation → conversation event',
    async run(ctx) {
      const a = await ctx.user('wna');
      const b = await ctx.user('wnb');
      const c = await ctx.user('wnc');
      const sb = await ctx.socket(b);
      const title = `pushed group ${rand(5)}`;
      const conv = await createGroup(a, [b, c], title);
      const { value } = await waitEvent(sb, ConversationEventSchema, (v) => sameId(v.conversation.id, conv.id), "the conversation event on B's socket");
      eq(value.conversation.title, title, 'conversation event title');
      expectMembers(value.conversation, [a, b, c], 'conversation event');
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Runner

const DEFAULT_CHECK_TIMEOUT_MS = 30_000;
const OVERALL_BUDGET_MS = 6 * 60_000;

export async function runBlackbox(baseUrl: string, log: (line: string) => void = () => {}): Promise<BlackboxResult> {
  const result: BlackboxResult = { passed: [], failed: [] };
  const errorAnswers: Array<{ where: string; status: number; shape: string | undefined }> = [];
  let answers = 0;
  const onResponse = (r: HttpResult) => {
    answers++;
    if (r.status >= 400) errorAnswers.push({ where: `${r.method} ${r.path}`, status: r.status, shape: problemShapeError(r) });
  };
  const anon = new ParleyClient(baseUrl, { onResponse });
  const started = Date.now();

  const all: Check[] = [
    ...checks,
    {
      name: 'errors: every error answer seen in this run was problem+json with a matching status; no 5xx',
      async run() {
        assert(answers > 0, 'no HTTP answers were seen');
        const fivexx = errorAnswers.filter((e) => e.status >= 500);
        const badShape = errorAnswers.filter((e) => e.shape !== undefined);
        const lines = [
          ...fivexx.slice(0, 5).map((e) => `${e.where} → ${e.status}`),
          ...badShape.slice(0, 5).map((e) => `${e.where} → ${e.status}: ${e.shape}`),
        ];
        assert(
          fivexx.length === 0 && badShape.length === 0,
          `${fivexx.length} answers were 5xx and ${badShape.length} of ${errorAnswers.length} error answers were not proper problem+json, e.g. ${lines.join(' ; ')}`,
        );
      },
    },
  ];

  // Preflight: when the server cannot be reached at all (refused, or no answer within 5 s), report
  // every check as not run instead of waiting for each one's timeouts.
  const unreachable = await new ParleyClient(baseUrl, { timeoutMs: 5_000 })
    .healthz()
    .then(() => undefined)
    .catch((err: unknown) => errText(err));
  if (unreachable !== undefined) {
    for (const check of all) {
      const error = `not run: the server is unreachable (${unreachable})`;
      result.failed.push({ name: check.name, error });
      log(`FAIL  ${check.name}: ${error}`);
    }
    return result;
  }

  for (const check of all) {
    if (Date.now() - started > OVERALL_BUDGET_MS) {
      const error = `not run: the overall time budget of ${OVERALL_BUDGET_MS / 1000} s was used up`;
      result.failed.push({ name: check.name, error });
      log(`FAIL  ${check.name}: ${error}`);
      continue;
    }
    const cleanups: Array<() => Promise<void> | void> = [];
    const ctx: Ctx = {
      base: baseUrl,
      anon,
      log,
      defer: (fn) => cleanups.push(fn),
      async user(tag, displayName) {
        for (let attempt = 1; ; attempt++) {
          const username = uname(tag);
          const pw = password();
          const res = await anon.register({ username, password: pw, ...(displayName !== undefined ? { displayName } : {}) });
          if (res.status === 409 && attempt < 3) continue;
          const account = expectJson(res, 201, AccountSchema, `register ${username}`);
          const session = expectJson(await anon.login({ username, password: pw }), 201, SessionSchema, `login ${username}`);
          return { username, password: pw, account, token: session.token, client: anon.withToken(session.token) };
        }
      },
      async socket(u, auth = 'query') {
        const s = await u.client.connect({ auth });
        cleanups.push(() => s.close());
        return s;
      },
    };
    const t0 = Date.now();
    const timeoutMs = check.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        check.run(ctx),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      result.passed.push(check.name);
      log(`PASS  ${check.name} (${Date.now() - t0} ms)`);
    } catch (err) {
      const error = errText(err);
      result.failed.push({ name: check.name, error });
      log(`FAIL  ${check.name}: ${error}`);
    } finally {
      clearTimeout(timer);
      await Promise.race([Promise.allSettled(cleanups.map(async (fn) => fn())), sleep(3_000)]);
    }
  }
  return result;
}

export const checkNames: readonly string[] = checks.map((c) => c.name);
