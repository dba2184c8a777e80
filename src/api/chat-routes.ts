// The route table of API.md. Handlers are one line of glue each: parse (done by the table),
// call chat/, shape the answer.
import { z } from 'zod';
import type { Chat } from '../chat/chat.ts';
import type { Database } from '../data/data.ts';
import type { Metrics } from './metrics.ts';
import type { Route } from './routes.ts';
import {
  accountSchema,
  conversationListSchema,
  conversationParams,
  conversationSchema,
  createAccountBody,
  createConversationBody,
  createSessionBody,
  healthSchema,
  historyAnswer,
  historyQuery,
  readBody,
  sendMessageAnswer,
  sendMessageBody,
  sessionSchema,
  statusPageSchema,
  syncAnswer,
  syncQuery,
} from './schemas.ts';

/** Asks the database for one row within `timeoutMs`; the message says why when it cannot. */
async function databaseReady(db: Database, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const answer = await Promise.race([
      db.query<{ recovery: boolean }>('SELECT pg_is_in_recovery() AS recovery'),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    if (answer.rows[0]?.recovery) return { ok: false, detail: 'the database is a read-only standby; no primary reachable' };
    return { ok: true, detail: 'primary reachable' };
  } catch (error) {
    return { ok: false, detail: `database unreachable: ${(error as Error).message}` };
  } finally {
    clearTimeout(timer);
  }
}

/** Every HTTP route of the chat API. */
export function chatRoutes(deps: { chat: Chat; db: Database; metrics: Metrics; incidents?: () => Promise<Array<{ id: string; title: string; state: 'open' | 'resolved'; startedAt: string; endedAt: string | null }>> }): Route[] {
  const { chat, db, metrics } = deps;
  return [
    {
      method: 'POST', url: '/v1/accounts', summary: 'Create an account', auth: 'none', body: createAccountBody,
      responses: { 201: { description: 'Created', schema: accountSchema } },
      errors: ['validation_failed', 'conflict', 'rate_limited', 'storage_unavailable'],
      handler: async ({ body, reply }) => {
        reply.code(201);
        return chat.register(body);
      },
    },
    {
      method: 'POST', url: '/v1/sessions', summary: 'Sign in', auth: 'none', body: createSessionBody,
      responses: { 201: { description: 'Signed in', schema: sessionSchema } },
      errors: ['validation_failed', 'unauthorized', 'rate_limited', 'storage_unavailable'],
      handler: async ({ body, reply }) => {
        reply.code(201);
        return chat.login(body);
      },
    },
    {
      method: 'DELETE', url: '/v1/sessions/current', summary: 'Sign out: the token stops working', auth: 'account',
      responses: { 204: { description: 'Signed out', schema: null } },
      errors: ['unauthorized'],
      handler: async ({ token, reply }) => {
        await chat.logout(token!);
        reply.code(204);
        return null;
      },
    },
    {
      method: 'GET', url: '/v1/me', summary: 'The signed-in account', auth: 'account',
      responses: { 200: { description: 'The account', schema: accountSchema } },
      errors: ['unauthorized'],
      handler: async ({ caller }) => ({ id: caller!.id, username: caller!.username, displayName: caller!.displayName }),
    },
    {
      method: 'POST', url: '/v1/conversations', summary: 'Start a direct or group conversation', auth: 'account', body: createConversationBody,
      responses: {
        201: { description: 'Created', schema: conversationSchema },
        200: { description: 'The existing direct conversation of this pair', schema: conversationSchema },
      },
      errors: ['validation_failed', 'unauthorized', 'rate_limited', 'storage_unavailable'],
      handler: async ({ caller, body, reply }) => {
        const result = await chat.createConversation(caller!, body);
        reply.code(result.created ? 201 : 200);
        return result.conversation;
      },
    },
    {
      method: 'GET', url: '/v1/conversations', summary: 'My conversations, most recently active first', auth: 'account',
      responses: { 200: { description: 'The list', schema: conversationListSchema } },
      errors: ['unauthorized', 'storage_unavailable'],
      handler: async ({ caller }) => ({ conversations: await chat.listConversations(caller!) }),
    },
    {
      method: 'GET', url: '/v1/conversations/:id', summary: 'One conversation', auth: 'account', params: conversationParams,
      responses: { 200: { description: 'The conversation', schema: conversationSchema } },
      errors: ['unauthorized', 'forbidden', 'not_found'],
      handler: async ({ caller, params }) => chat.getConversation(caller!, chat.parseConversationId(params.id)),
    },
    {
      method: 'POST', url: '/v1/conversations/:id/messages', summary: 'Send a message (idempotent on clientMessageId)', auth: 'account',
      params: conversationParams, body: sendMessageBody,
      responses: {
        201: { description: 'Stored and durable', schema: sendMessageAnswer },
        200: { description: 'Already stored: the same message', schema: sendMessageAnswer },
      },
      errors: ['validation_failed', 'unauthorized', 'forbidden', 'not_found', 'conflict', 'rate_limited', 'storage_unavailable'],
      handler: async ({ caller, params, body, reply }) => {
        const result = await chat.send(caller!, { conversationId: chat.parseConversationId(params.id), ...body });
        if (result.created) metrics.messagesSent.inc({ transport: 'http' });
        reply.code(result.created ? 201 : 200);
        return { message: result.message };
      },
    },
    {
      method: 'GET', url: '/v1/conversations/:id/messages', summary: 'A page of history, ascending seq', auth: 'account',
      params: conversationParams, query: historyQuery,
      responses: { 200: { description: 'A page', schema: historyAnswer } },
      errors: ['validation_failed', 'unauthorized', 'forbidden', 'not_found', 'storage_unavailable'],
      handler: async ({ caller, params, query }) => chat.history(caller!, { conversationId: chat.parseConversationId(params.id), ...query }),
    },
    {
      method: 'POST', url: '/v1/conversations/:id/read', summary: 'Read receipt (never moves backwards)', auth: 'account',
      params: conversationParams, body: readBody,
      responses: { 204: { description: 'Recorded', schema: null } },
      errors: ['validation_failed', 'unauthorized', 'forbidden', 'not_found'],
      handler: async ({ caller, params, body, reply }) => {
        await chat.markRead(caller!, { conversationId: chat.parseConversationId(params.id), seq: body.seq });
        reply.code(204);
        return null;
      },
    },
    {
      method: 'GET', url: '/v1/sync', summary: 'Everything since a cursor, oldest first', auth: 'account', query: syncQuery,
      responses: { 200: { description: 'Events', schema: syncAnswer } },
      errors: ['validation_failed', 'unauthorized', 'storage_unavailable'],
      handler: async ({ caller, query }) => chat.sync(caller!, query),
    },
    {
      method: 'GET', url: '/healthz', summary: 'Liveness', auth: 'none',
      responses: { 200: { description: 'Alive', schema: z.object({ state: z.literal('ok') }) } },
      errors: [],
      handler: async () => ({ state: 'ok' }),
    },
    {
      method: 'GET', url: '/readyz', summary: 'Readiness, honest about the database', auth: 'none',
      responses: { 200: { description: 'Can serve', schema: healthSchema } },
      errors: ['storage_unavailable'],
      handler: async ({ reply }) => {
        // What the data layer already knows (its probes, breakers, the lease) answers at once; only
        // when it sees no trouble is the primary asked, so a frozen one cannot make this hang.
        const health = db.health();
        if (health.state === 'degraded') return { state: 'degraded', detail: health.detail };
        const ready = health.state === 'down' ? { ok: false, detail: health.detail } : await databaseReady(db, 2000);
        if (!ready.ok) {
          reply.code(503).header('retry-after', '2').type('application/problem+json');
          return { type: 'https://parley.invalid/problems/storage_unavailable', title: 'Storage unavailable', status: 503, detail: ready.detail, code: 'storage_unavailable', state: 'down' };
        }
        return { state: 'ok', detail: `${ready.detail}; ${health.detail}` };
      },
    },
    {
      method: 'GET', url: '/v1/status', summary: 'Public status page model', auth: 'none',
      responses: { 200: { description: 'Status', schema: statusPageSchema } },
      errors: [],
      handler: async () => {
        const health = db.health();
        const [ready, incidents] = await Promise.all([health.state === 'ok' ? databaseReady(db, 2000) : { ok: false }, deps.incidents?.() ?? []]);
        const database = ready.ok ? 'ok' : health.state === 'degraded' ? 'degraded' : 'down';
        return {
          state: database,
          components: [
            { name: 'messaging', state: database },
            { name: 'database', state: database },
          ],
          incidents,
        };
      },
    },
  ];
}
