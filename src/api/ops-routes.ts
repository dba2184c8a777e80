// API.md's `/v1/ops/*` views on the app server: operators (accounts with the operator role) read
// the cluster and the alerts and acknowledge them here; the app server forwards each call to the
// ops process on 127.0.0.1 (its URL and token from DIR/ops.json, read on every call, so a
// restarted ops process on a new port is found at once). A page's signed acknowledgement link
// points here too (`alerting.externalUrl`): its GET shows a button, its POST acknowledges, with the
// signature as the only authority.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Caller } from '../chat/chat.ts';
import { ParleyError } from '../errors/errors.ts';
import type { Route } from './routes.ts';

/** Where the ops process answers, or undefined when it is not running. */
export interface OpsLocation {
  url: string;
  token: string;
}

const forwardTimeoutMs = 5000;

/** Forwards one call; the ops process's own answer (status, type, body) goes back unchanged. */
async function forward(
  locate: () => OpsLocation | undefined,
  reply: FastifyReply,
  path: string,
  init: { method: 'GET' | 'POST'; body?: unknown; withToken: boolean },
): Promise<FastifyReply> {
  const ops = locate();
  if (!ops) throw new ParleyError('ops_unavailable', 'The ops process is not running; parley up restarts it, and its silence is paged by the supervisor');
  let response: Response;
  try {
    response = await fetch(`${ops.url}${path}`, {
      method: init.method,
      headers: {
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(init.withToken ? { authorization: `Bearer ${ops.token}` } : {}),
      },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: AbortSignal.timeout(forwardTimeoutMs),
    });
  } catch (error) {
    throw new ParleyError('ops_unavailable', `The ops process did not answer within ${forwardTimeoutMs / 1000} s (${(error as Error).message}); retry shortly`, { retryAfterSeconds: 2 });
  }
  const text = await response.text();
  return reply
    .code(response.status)
    .type(response.headers.get('content-type') ?? 'application/json')
    .send(text);
}

const alertId = z.strictObject({ id: z.string().min(1).max(200) });
const incidentId = z.strictObject({ id: z.string().regex(/^\d{8}-\d{6}$/, 'an incident id looks like 20261124-195012') });
const anything = z.unknown();

/**
 * The routes. `authenticateOperator` is the app's own sign-in check with the operator role, used by
 * the acknowledgement route only when the request carries no signed link.
 */
export function opsRoutes(options: { locate: () => OpsLocation | undefined; authenticateOperator: (request: FastifyRequest) => Promise<Caller> }): Route[] {
  const { locate } = options;
  const linkQuery = (request: FastifyRequest): string => {
    const at = request.url.indexOf('?');
    return at >= 0 ? request.url.slice(at) : '';
  };
  return [
    {
      method: 'GET',
      url: '/v1/ops/cluster',
      summary: 'The cluster as the ops process samples it: the newest sample, the last N minutes of samples, the firing alerts (operators)',
      auth: 'operator',
      query: z.strictObject({ minutes: z.coerce.number().int().min(0).max(60).optional() }),
      responses: { 200: { description: '{sample, series, alerts} (docs/monitoring.md)', schema: anything } },
      errors: ['unauthorized', 'forbidden', 'ops_unavailable'],
      handler: ({ query, reply }) => forward(locate, reply, `/v1/ops/cluster?minutes=${query.minutes ?? 5}`, { method: 'GET', withToken: false }),
    },
    {
      method: 'GET',
      url: '/v1/ops/alerts',
      summary: 'Firing, pending and recently resolved alerts, as `parley alerts --json` (operators)',
      auth: 'operator',
      responses: { 200: { description: '{alerts: [...]} (docs/cli.md)', schema: anything } },
      errors: ['unauthorized', 'forbidden', 'ops_unavailable'],
      handler: ({ reply }) => forward(locate, reply, '/v1/ops/alerts', { method: 'GET', withToken: false }),
    },
    {
      method: 'GET',
      url: '/v1/ops/incidents',
      summary: 'Incidents read from the journal, oldest first, as `parley incidents --json` (operators)',
      auth: 'operator',
      responses: { 200: { description: '{incidents: [...]} (docs/incidents.md)', schema: anything } },
      errors: ['unauthorized', 'forbidden', 'ops_unavailable'],
      handler: ({ reply }) => forward(locate, reply, '/v1/ops/incidents', { method: 'GET', withToken: false }),
    },
    {
      method: 'GET',
      url: '/v1/ops/incidents/:id',
      summary: 'One incident: alerts, pages, acknowledgements, failover steps and timeline (operators)',
      auth: 'operator',
      params: incidentId,
      responses: { 200: { description: 'the incident (docs/incidents.md)', schema: anything } },
      errors: ['unauthorized', 'forbidden', 'not_found', 'ops_unavailable'],
      handler: ({ params, reply }) => forward(locate, reply, `/v1/ops/incidents/${encodeURIComponent(params.id)}`, { method: 'GET', withToken: false }),
    },
    {
      method: 'POST',
      url: '/v1/ops/alerts/:id/ack',
      summary: "Acknowledge an alert: as the signed-in operator, or with a page's signed link (?person&expires&signature); escalation stops",
      // Either a signed link or an operator's token: checked in the handler, not by the table.
      auth: 'none',
      params: alertId,
      responses: { 200: { description: '{id, by, at, already} (or a small page for a signed link)', schema: anything } },
      errors: ['unauthorized', 'forbidden', 'not_found', 'validation_failed', 'ops_unavailable'],
      handler: async ({ params, request, reply }) => {
        const path = `/v1/ops/alerts/${encodeURIComponent(params.id)}/ack`;
        const query = linkQuery(request);
        if (query.includes('signature=')) return forward(locate, reply, `${path}${query}`, { method: 'POST', withToken: false });
        const caller = await options.authenticateOperator(request);
        return forward(locate, reply, path, { method: 'POST', body: { by: caller.username }, withToken: true });
      },
    },
    {
      method: 'GET',
      url: '/v1/ops/alerts/:id/ack',
      summary: "A page's signed acknowledgement link: shows an Acknowledge button (mail scanners open links; only the POST acknowledges)",
      auth: 'none',
      params: alertId,
      responses: { 200: { description: 'a small HTML page', schema: null } },
      errors: ['validation_failed', 'ops_unavailable'],
      handler: ({ params, request, reply }) =>
        forward(locate, reply, `/v1/ops/alerts/${encodeURIComponent(params.id)}/ack${linkQuery(request)}`, { method: 'GET', withToken: false }),
    },
  ];
}

/**
 * The incidents of the public status page, from the ops process; none when it cannot be asked
 * within a second (the page must answer while ops is down, and says what the database says).
 */
export async function statusIncidents(locate: () => OpsLocation | undefined): Promise<Array<{ id: string; title: string; state: 'open' | 'resolved'; startedAt: string; endedAt: string | null }>> {
  const ops = locate();
  if (!ops) return [];
  try {
    const response = await fetch(`${ops.url}/v1/ops/status-incidents`, { signal: AbortSignal.timeout(1000) });
    if (!response.ok) return [];
    return ((await response.json()) as { incidents: Array<{ id: string; title: string; state: 'open' | 'resolved'; startedAt: string; endedAt: string | null }> }).incidents;
  } catch {
    return [];
  }
}
