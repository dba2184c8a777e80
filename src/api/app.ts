// The app server: fastify with one error handler at the root, the route table, metrics and the
// WebSocket stream. `buildApp` is apart from `listen` so tests use `app.inject()` and real sockets.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Chat } from '../chat/chat.ts';
import type { Database, Priority } from '../data/data.ts';
import { errorTitles, isParleyError, ParleyError, type ErrorCode } from '../errors/errors.ts';
import { countError, createMetrics, type Metrics } from './metrics.ts';
import { createRateLimiter } from './rate-limit.ts';
import { openApiDocument, registerRoutes } from './routes.ts';
import { chatRoutes } from './chat-routes.ts';
import { opsRoutes, statusIncidents, type OpsLocation } from './ops-routes.ts';
import { attachStream, type StreamOptions } from './stream.ts';
import { registerWebClient } from './web.ts';

/** What an app server needs. */
export interface AppOptions {
  chat: Chat;
  db: Database;
  /** Where the ops process answers (DIR/ops.json), for the /v1/ops/* views; absent: they answer 503. */
  ops?: () => OpsLocation | undefined;
  logger: Logger;
  bodyLimitBytes: number;
  rateLimitPerMinute: number;
  stream: StreamOptions;
  version?: string;
}

/** Sends a problem+json answer. */
export function sendProblem(reply: FastifyReply, code: ErrorCode, detail: string, extra: { retryAfterSeconds?: number | undefined } = {}): FastifyReply {
  const error = new ParleyError(code, detail);
  if (extra.retryAfterSeconds !== undefined) reply.header('retry-after', String(extra.retryAfterSeconds));
  return reply
    .code(error.status)
    .type('application/problem+json')
    .send({ type: `https://parley.invalid/problems/${code}`, title: errorTitles[code], status: error.status, detail, code });
}

// Fastify's own errors (parsing, limits) mapped to our stable codes.
function fromFastify(error: FastifyError): { code: ErrorCode; detail: string } | undefined {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { code: 'validation_failed', detail: `The body is not valid JSON: ${error.message.replace(/^Body is not valid JSON but content-type is set to 'application\/json'/, '').trim() || error.message}` };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { code: 'payload_too_large', detail: error.message };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { code: 'unsupported_media_type', detail: `${error.message}; send application/json` };
    default:
      if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
        return { code: 'bad_request', detail: error.message };
      }
      return undefined;
  }
}

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match?.[1];
  }
  return undefined;
}

/** Builds the fastify app (not listening). */
export async function buildApp(options: AppOptions): Promise<{ app: FastifyInstance; metrics: Metrics }> {
  const app = Fastify({
    loggerInstance: options.logger as unknown as FastifyBaseLogger,
    // Per-request lines would drown the decisions that matter; latency lives in /metrics.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimitBytes,
    return503OnClosing: true,
    forceCloseConnections: true,
  });
  // JSON only: a text/plain body is a 415, not a string that fails validation later.
  app.removeContentTypeParser('text/plain');
  const metrics = createMetrics({ admission: () => options.db.admissionStats(), sendTurns: () => options.chat.sendTurns() });
  const limiter = createRateLimiter({ perMinute: options.rateLimitPerMinute });

  app.setErrorHandler((error: FastifyError | Error, request, reply) => {
    const route = request.routeOptions.url ?? 'unknown';
    if (isParleyError(error)) {
      countError(metrics, error, route);
      return sendProblem(reply, error.code, error.message, { retryAfterSeconds: error.retryAfterSeconds });
    }
    const mapped = fromFastify(error as FastifyError);
    if (mapped) {
      metrics.errors.inc({ code: mapped.code, route, dependency: 'none' });
      return sendProblem(reply, mapped.code, mapped.detail);
    }
    // A bug: log it with context, answer without internals.
    request.log.error({ err: error, route, method: request.method }, 'unexpected error');
    metrics.errors.inc({ code: 'internal', route, dependency: 'none' });
    return sendProblem(reply, 'internal', 'Something went wrong on our side; it has been logged');
  });

  app.setNotFoundHandler((request, reply) => sendProblem(reply, 'not_found', `No route ${request.method} ${request.url.split('?')[0]}`));

  app.addHook('onResponse', async (request, reply) => {
    metrics.httpDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  async function authenticate(request: FastifyRequest, priority: Priority) {
    const token = bearerToken(request);
    if (!token) throw new ParleyError('unauthorized', 'Sign in first: send Authorization: Bearer <token>');
    const caller = await options.chat.authenticate(token, { priority });
    const waitSeconds = limiter.take(`account:${caller.id}`, Date.now());
    if (waitSeconds > 0) {
      throw new ParleyError('rate_limited', `Too many requests from this account; retry in ${waitSeconds} s`, { retryAfterSeconds: waitSeconds });
    }
    return { caller, token };
  }

  // Anonymous calls (sign-up, sign-in) are limited per address, which also slows password guessing.
  app.addHook('onRequest', async (request) => {
    if (request.method === 'POST' && (request.url === '/v1/accounts' || request.url === '/v1/sessions')) {
      const waitSeconds = limiter.take(`ip:${request.ip}`, Date.now());
      if (waitSeconds > 0) {
        throw new ParleyError('rate_limited', `Too many sign-ups or sign-ins from this address; retry in ${waitSeconds} s`, { retryAfterSeconds: waitSeconds });
      }
    }
  });

  const routes = [
    ...chatRoutes({ chat: options.chat, db: options.db, metrics, incidents: () => statusIncidents(options.ops ?? (() => undefined)) }),
    ...opsRoutes({
      locate: options.ops ?? (() => undefined),
      authenticateOperator: async (request) => {
        const { caller } = await authenticate(request, 'send');
        if (!caller.isOperator) throw new ParleyError('forbidden', 'This needs the operator role (parley operator add USERNAME)');
        return caller;
      },
    }),
  ];
  registerRoutes(app, routes, authenticate);
  const document = openApiDocument(routes, options.version ?? '0.1.0');
  app.get('/v1/openapi.json', async () => document);
  app.get('/metrics', async (_request, reply) => {
    const stats = options.db.stats();
    metrics.pool.set({ state: 'total' }, stats.total);
    metrics.pool.set({ state: 'idle' }, stats.idle);
    metrics.pool.set({ state: 'waiting' }, stats.waiting);
    metrics.readPoolMember.reset();
    const routed = options.db as Partial<{ readPool(): string[] }>;
    for (const node of routed.readPool?.() ?? []) metrics.readPoolMember.set({ node }, 1);
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  registerWebClient(app);
  attachStream(app, { chat: options.chat, metrics, limiter, stream: options.stream, logger: options.logger, health: () => options.db.health() });
  return { app, metrics };
}
