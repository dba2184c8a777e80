// ops/: the ops process (DESIGN.md "Processes": monitor → alerting → incidents). Once a second it
// takes a sample of the cluster (monitor's sampler), keeps the last hour in memory, exports it on
// /metrics, evaluates the alert rules with the pure evaluator, journals every transition and hands
// firing and resolved alerts to alerting/, which pages people and escalates until acknowledged.
// It serves the ops API on 127.0.0.1 (the app servers forward operators' /v1/ops/* calls to it,
// `parley alerts` and `parley status` call it directly).
//
// Evaluation runs on its own timer, apart from sampling: a sampler stuck on a frozen node must not
// stop the evaluator, or SamplerStalled could never fire. The evaluator's state is saved after every
// transition, so a restarted ops process neither forgets a firing alert nor fires it again.
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { createAlerting, parseAckLink, type Alerting, type AlertingConfig, type Alert as Page } from '../alerting/alerting.ts';
import { errorTitles, isParleyError, ParleyError, type ErrorCode } from '../errors/errors.ts';
import { findIncident, incidentReader, publicIncident } from '../incidents/incidents.ts';
import type { LeaseStore } from '../failover/failover.ts';
import {
  createHistory,
  createOpsMetrics,
  createSampler,
  emptyAlertState,
  evaluate,
  loadRules,
  type Alert,
  type AlertState,
  type SampledAppServer,
  type SampledNode,
  type Sample,
  type Transition,
} from '../monitor/monitor.ts';

export interface OpsOptions {
  nodes: readonly SampledNode[];
  appServers: readonly SampledAppServer[];
  lease: LeaseStore;
  alerting: AlertingConfig;
  cluster: { maximumLagOnFailoverBytes: number; loopIntervalMs: number };
  /** Directory of the evaluator's and alerting's saved state (created when missing). */
  stateDir: string;
  /** The journal every transition and delivery attempt is appended to (JSON lines). */
  journalFile: string;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Bearer token required by the ops API's mutating routes. */
  token: string;
  /** The alert rules; src/monitor/rules.yaml by default. */
  rulesFile?: string;
  sampleIntervalMs?: number;
  log?: (line: string) => void;
}

export interface Ops {
  url: string;
  /** The newest sample, or undefined before the first. */
  latest(): Sample | undefined;
  close(): Promise<void>;
}

/** One alert as `GET /v1/ops/alerts` and `parley alerts --json` show it (docs/monitoring.md). */
export interface AlertListing {
  id: string;
  name: string;
  severity: string;
  node: string | null;
  status: 'pending' | 'firing' | 'resolved';
  summary: string;
  /** ISO times: when the condition began to hold, when it fired, when it resolved. */
  activeAt: string;
  startsAt: string | null;
  endsAt: string | null;
  /** `rules` for the built-in evaluator, `alertmanager` for alerts received from Prometheus. */
  source: 'rules' | 'alertmanager';
  ack: { by: string; at: string } | null;
  /** People and channels paged so far. */
  pages: { person: string | null; channels: string[]; at: string }[];
  deliveries: { channel: string; notice: string; status: string; attempts: number; lastError?: string }[];
}

const historyMs = 3_600_000;
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The alert as alerting/ takes it: one transition to firing or resolved. */
export function toPage(alert: Alert): Page {
  const page: Page = {
    id: alert.id,
    name: alert.name,
    severity: alert.severity,
    node: alert.node ?? 'cluster',
    summary: alert.summary,
    startsAt: new Date(alert.startsAtMs ?? alert.activeAtMs).toISOString(),
    status: alert.status === 'resolved' ? 'resolved' : 'firing',
    labels: { scope: alert.scope, source: 'parley' },
  };
  if (alert.endsAtMs !== null) page.endsAt = new Date(alert.endsAtMs).toISOString();
  return page;
}

function loadAlertState(file: string): AlertState {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as AlertState;
    if (parsed && typeof parsed === 'object' && parsed.alerts && typeof parsed.alerts === 'object') return parsed;
  } catch {
    // missing or unreadable: start empty (alerts that still hold fire again after their `for`)
  }
  return emptyAlertState();
}

function saveAtomically(file: string, text: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: 0o600 });
  renameSync(temporary, file);
}

function problem(reply: FastifyReply, code: ErrorCode, detail: string): FastifyReply {
  const status = new ParleyError(code, detail).status;
  return reply.code(status).type('application/problem+json').send({ type: `https://parley.invalid/problems/${code}`, title: errorTitles[code], status, detail, code });
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(message: string, body = ''): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Parley alert</title></head><body><p>${message}</p>${body}</body></html>\n`;
}

/** Starts sampling, evaluating and serving; resolves once the ops API listens. */
export async function startOps(options: OpsOptions): Promise<Ops> {
  const log = options.log ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const intervalMs = options.sampleIntervalMs ?? 1000;
  const rules = loadRules(options.rulesFile);
  mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
  const alertStateFile = join(options.stateDir, 'alert-state.json');
  let alertState = loadAlertState(alertStateFile);

  const journal = (entry: Record<string, unknown>): void => {
    try {
      appendFileSync(options.journalFile, `${JSON.stringify({ at: new Date().toISOString(), ...entry })}\n`);
    } catch (error) {
      log(`cannot write the journal ${options.journalFile}: ${(error as Error).message}`);
    }
  };

  const alerting: Alerting = await createAlerting({
    config: options.alerting,
    stateDir: join(options.stateDir, 'alerting'),
    journal: (event) => journal({ ...event, kind: `alerting-${event.kind}` }),
  });
  const sampler = createSampler({
    nodes: options.nodes,
    appServers: options.appServers,
    lease: options.lease,
    cluster: options.cluster,
    timeoutMs: Math.min(800, intervalMs),
  });
  const history = createHistory(historyMs);
  const metrics = createOpsMetrics();
  let lastEvaluationMs = 0;
  let lastAlertingTickMs = 0;
  let sampling = false;
  let stopped = false;
  const timers: NodeJS.Timeout[] = [];

  const firing = (): Alert[] => Object.values(alertState.alerts).filter((a) => a.status === 'firing');

  async function takeSample(): Promise<void> {
    if (sampling) return; // the previous round still waits on a frozen node; SamplerStalled will say so
    sampling = true;
    try {
      const sample = await sampler.sample(Date.now());
      history.add(sample);
      metrics.update(sample, sampler.totals(), firing());
    } catch (error) {
      log(`sampling failed: ${(error as Error).message}`);
    } finally {
      sampling = false;
    }
    void sampler.heartbeat();
  }

  async function evaluateNow(): Promise<void> {
    const now = Date.now();
    const { state, transitions } = evaluate(history.all(), rules, alertState, now);
    alertState = state;
    lastEvaluationMs = now;
    if (transitions.length > 0) {
      try {
        saveAtomically(alertStateFile, JSON.stringify(alertState));
      } catch (error) {
        log(`cannot save ${alertStateFile}: ${(error as Error).message}`);
      }
    }
    for (const transition of transitions) await onTransition(transition);
  }

  async function onTransition(t: Transition): Promise<void> {
    const a = t.alert;
    journal({ kind: 'alert', event: t.to, from: t.from, id: a.id, name: a.name, severity: a.severity, node: a.node, summary: a.summary });
    if (t.to === 'firing') log(`alert firing: ${a.name}${a.node ? ` (${a.node})` : ''}: ${a.summary}`);
    if (t.to === 'resolved') log(`alert resolved: ${a.name}${a.node ? ` (${a.node})` : ''}`);
    // alerting/ hears of episodes that fired: a pending that never fired pages nobody.
    if (t.to === 'firing' || (t.to === 'resolved' && t.from === 'firing')) {
      try {
        await alerting.onTransition(toPage(a));
      } catch (error) {
        log(`alerting refused ${a.name}: ${(error as Error).message}`);
      }
    }
  }

  async function alertingTick(): Promise<void> {
    const now = Date.now();
    try {
      await alerting.tick(now);
      await alerting.heartbeat(now);
      lastAlertingTickMs = now;
    } catch (error) {
      log(`alerting tick failed: ${(error as Error).message}`);
    }
  }

  function listAlerts(): AlertListing[] {
    const views = new Map(alerting.list().map((v) => [v.alert.id, v]));
    const out: AlertListing[] = [];
    for (const a of Object.values(alertState.alerts)) {
      const view = views.get(a.id);
      views.delete(a.id);
      out.push({
        id: a.id,
        name: a.name,
        severity: a.severity,
        node: a.node,
        status: a.status,
        summary: a.summary,
        activeAt: iso(a.activeAtMs)!,
        startsAt: iso(a.startsAtMs),
        endsAt: iso(a.endsAtMs),
        source: 'rules',
        ack: view?.ack ? { by: view.ack.by, at: iso(view.ack.atMs)! } : null,
        pages: (view?.pages ?? []).map((p) => ({ person: p.person, channels: p.channels, at: iso(p.atMs)! })),
        deliveries: view?.deliveries ?? [],
      });
    }
    // Alerts that came through POST /v1/ops/alertmanager (and episodes the evaluator has forgotten).
    for (const view of views.values()) {
      const ours = view.alert.labels?.source === 'parley';
      out.push({
        id: view.alert.id,
        name: view.alert.name,
        severity: view.alert.severity,
        node: view.alert.node,
        status: view.alert.status,
        summary: view.alert.summary,
        activeAt: view.alert.startsAt,
        startsAt: view.alert.startsAt,
        endsAt: view.alert.endsAt ?? null,
        source: ours ? 'rules' : 'alertmanager',
        ack: view.ack ? { by: view.ack.by, at: iso(view.ack.atMs)! } : null,
        pages: view.pages.map((p) => ({ person: p.person, channels: p.channels, at: iso(p.atMs)! })),
        deliveries: view.deliveries,
      });
    }
    const rank = { firing: 0, pending: 1, resolved: 2 } as const;
    return out.sort((x, y) => rank[x.status] - rank[y.status] || (y.startsAt ?? y.activeAt).localeCompare(x.startsAt ?? x.activeAt));
  }

  const app: FastifyInstance = Fastify({ logger: false, bodyLimit: 1_048_576, forceCloseConnections: true });
  app.setErrorHandler((error, _request, reply) => {
    if (isParleyError(error)) return problem(reply, error.code, error.message);
    const status = (error as { statusCode?: number }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) return problem(reply, 'bad_request', (error as Error).message);
    log(`ops API error: ${(error as Error).stack ?? String(error)}`);
    return problem(reply, 'internal', 'Something went wrong in the ops process; it has been logged');
  });
  app.setNotFoundHandler((request, reply) => problem(reply, 'not_found', `No route ${request.method} ${request.url.split('?')[0]}`));
  const requireToken = (authorization: string | undefined): void => {
    if (authorization !== `Bearer ${options.token}`) throw new ParleyError('unauthorized', 'The ops API needs the token of DIR/ops.json (or an operator account through an app server)');
  };

  app.get('/metrics', async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  // Liveness for the supervisor's watch: silent (no answer, or no evaluation or alerting tick for
  // a while) makes it raise the fallback alert.
  app.get('/healthz', async () => ({ ok: true, pid: process.pid, lastSampleAt: iso(history.latest()?.timestampMs ?? null), lastEvaluationAt: iso(lastEvaluationMs || null), lastAlertingTickAt: iso(lastAlertingTickMs || null) }));
  app.get<{ Querystring: { minutes?: string } }>('/v1/ops/cluster', async (request) => {
    const minutes = Math.min(60, Math.max(0, Number(request.query.minutes ?? '5') || 0));
    const latest = history.latest();
    return { sample: latest ?? null, series: history.since(Date.now() - minutes * 60_000), alerts: listAlerts().filter((a) => a.status === 'firing') };
  });
  app.get('/v1/ops/alerts', async () => ({ alerts: listAlerts() }));
  // Incidents from the journal (incidents/): all of them for operators; for the public status page
  // the open ones and those of the last 7 days, without node names or people.
  const incidents = incidentReader(options.journalFile);
  app.get('/v1/ops/incidents', async () => ({ incidents: incidents(Date.now()) }));
  app.get<{ Params: { id: string } }>('/v1/ops/incidents/:id', async (request) => findIncident(incidents(Date.now()), request.params.id));
  app.get('/v1/ops/status-incidents', async () => {
    const recent = Date.now() - 7 * 24 * 3600_000;
    return { incidents: incidents(Date.now()).filter((i) => i.endedAt === null || Date.parse(i.endedAt) >= recent).reverse().slice(0, 20).map(publicIncident) };
  });
  // Acknowledgement: with a signed link's query (person, expires, signature) the signature is the
  // authority; otherwise the ops token (an operator through an app server, or `parley alerts ack`).
  app.post<{ Params: { id: string }; Body: { by?: unknown } | undefined }>('/v1/ops/alerts/:id/ack', async (request, reply) => {
    if (request.url.includes('signature=')) {
      const signed = parseAckLink(`http://link${request.url}`);
      if (!signed) throw new ParleyError('validation_failed', 'This acknowledgement link is incomplete; open the link from the page as it was sent');
      const report = await alerting.ackWithLink(signed);
      return reply
        .code(200)
        .type('text/html; charset=utf-8')
        .send(page(escapeHtml(report.already ? `Alert ${report.alertId} was already acknowledged by ${report.ack.by}.` : `Acknowledged ${report.alertId} as ${report.ack.by}; escalation stopped.`)));
    }
    requireToken(request.headers.authorization);
    const by = typeof request.body?.by === 'string' && request.body.by.trim() !== '' ? request.body.by.trim().slice(0, 200) : 'operator';
    // alerting/ journals the ack (kind `alerting-ack`: who, when, how).
    const report = await alerting.ack(request.params.id, by);
    return reply.code(200).send({ id: report.alertId, by: report.ack.by, at: iso(report.ack.atMs), already: report.already });
  });
  // Opening a signed link only shows a button: mail scanners open links, and a GET that
  // acknowledged would silence pages nobody read. The button POSTs the same URL.
  app.get<{ Params: { id: string } }>('/v1/ops/alerts/:id/ack', async (request, reply) => {
    const signed = parseAckLink(`http://link${request.url}`);
    if (!signed) throw new ParleyError('validation_failed', 'This acknowledgement link is incomplete; open the link from the page as it was sent');
    const action = escapeHtml(request.url);
    return reply
      .code(200)
      .type('text/html; charset=utf-8')
      .send(page(`Acknowledge alert ${escapeHtml(signed.alertId)} as ${escapeHtml(signed.person)}?`, `<form method="post" action="${action}"><button type="submit">Acknowledge</button></form>`));
  });
  app.post('/v1/ops/alertmanager', async (request) => {
    requireToken(request.headers.authorization);
    const result = await alerting.receiveAlertmanager(request.body);
    return { accepted: result.accepted };
  });

  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address();
  const url = `http://${options.host}:${typeof address === 'object' && address ? address.port : options.port}`;

  const every = (ms: number, work: () => Promise<void>): void => {
    let running = false;
    const timer = setInterval(() => {
      if (running || stopped) return;
      running = true;
      void work().finally(() => {
        running = false;
      });
    }, ms);
    timers.push(timer);
  };
  void takeSample();
  every(intervalMs, takeSample);
  // Evaluated half a period after sampling, so each evaluation sees the sample of its second.
  setTimeout(() => {
    if (!stopped) {
      void evaluateNow();
      every(intervalMs, evaluateNow);
    }
  }, Math.floor(intervalMs / 2)).unref();
  every(1000, alertingTick);
  log(`ops: sampling ${options.nodes.length} node(s) and ${options.appServers.length} app server(s) every ${intervalMs} ms; ${rules.rules.length} rules; API at ${url}`);

  return {
    url,
    latest: () => history.latest(),
    async close() {
      stopped = true;
      for (const timer of timers) clearInterval(timer);
      await app.close().catch(() => undefined);
      await alerting.close().catch(() => undefined);
      await sampler.close();
    },
  };
}
