// A small route table: each route declares its schemas once; `registerRoutes` validates with them
// and `openApiDocument` describes them. Handlers get parsed input and the caller, never raw bodies.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Caller } from '../chat/chat.ts';
import type { Priority } from '../data/data.ts';
import { ParleyError, type ErrorCode } from '../errors/errors.ts';
import { describeProblems, problemSchema } from './schemas.ts';

/** One HTTP route. */
export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  summary: string;
  /** Needs a bearer token; `operator` needs the operator role too. */
  auth: 'none' | 'account' | 'operator';
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  /** Success status and answer schema (null: no body). */
  responses: Record<number, { description: string; schema: z.ZodType | null }>;
  errors: ErrorCode[];
  handler: (input: { params: any; query: any; body: any; caller: Caller | undefined; token: string | undefined; request: FastifyRequest; reply: FastifyReply }) => Promise<unknown>;
}

/** Validates one part of a request; 400 naming the field on failure. */
export function parsePart<T>(schema: z.ZodType<T> | undefined, value: unknown, where: string): T {
  if (!schema) return undefined as T;
  const result = schema.safeParse(value);
  if (!result.success) throw new ParleyError('validation_failed', describeProblems(result.error, where));
  return result.data;
}

/**
 * The admission class of a route's database work (data/admission-core.ts), its session lookup
 * included: what changes state (sends, receipts, new conversations, sign-out) is a `send`, what
 * only reads is a `read` — under overload reads are shed before any write.
 */
export function priorityOf(route: Pick<Route, 'method'>): Priority {
  return route.method === 'GET' ? 'read' : 'send';
}

/** Registers routes on fastify with validation and authentication. */
export function registerRoutes(
  app: FastifyInstance,
  routes: readonly Route[],
  authenticate: (request: FastifyRequest, priority: Priority) => Promise<{ caller: Caller; token: string }>,
): void {
  for (const route of routes) {
    app.route({
      method: route.method,
      url: route.url,
      handler: async (request, reply) => {
        let caller: Caller | undefined;
        let token: string | undefined;
        if (route.auth !== 'none') {
          ({ caller, token } = await authenticate(request, priorityOf(route)));
          if (route.auth === 'operator' && !caller.isOperator) {
            throw new ParleyError('forbidden', 'This needs the operator role (parley operator add USERNAME)');
          }
        }
        const params = parsePart(route.params, request.params, 'path');
        const query = parsePart(route.query, request.query ?? {}, 'query');
        const body = parsePart(route.body, request.body, 'body');
        return route.handler({ params, query, body, caller, token, request, reply });
      },
    });
  }
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): unknown {
  return z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' });
}

/** OpenAPI 3.1 for the route table, generated from the same zod schemas that validate requests. */
export function openApiDocument(routes: readonly Route[], version: string): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const parameters: unknown[] = [];
    for (const [where, schema] of [['path', route.params], ['query', route.query]] as const) {
      if (!schema) continue;
      const described = jsonSchema(schema, 'input') as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, property] of Object.entries(described.properties ?? {})) {
        parameters.push({ name, in: where, required: where === 'path' || (described.required ?? []).includes(name), schema: property });
      }
    }
    const responses: Record<string, unknown> = {};
    for (const [status, answer] of Object.entries(route.responses)) {
      responses[status] = answer.schema
        ? { description: answer.description, content: { 'application/json': { schema: jsonSchema(answer.schema, 'output') } } }
        : { description: answer.description };
    }
    for (const code of route.errors) {
      const status = String(new ParleyError(code, '').status);
      responses[status] ??= {
        description: `Problem (${code})`,
        content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
      };
    }
    paths[path] ??= {};
    paths[path]![route.method.toLowerCase()] = {
      summary: route.summary,
      ...(route.auth === 'none' ? { security: [] } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(route.body ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(route.body, 'input') } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Parley', version, description: 'The Parley messenger API. Errors are application/problem+json with a stable `code`.' },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: { Problem: jsonSchema(problemSchema, 'output') },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
