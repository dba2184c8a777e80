// Prometheus metrics of one app server: per-route latency, errors by code, sockets, pool, admission.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { failureOrigin, priorities, type AdmissionStats } from '../data/data.ts';
import { isParleyError } from '../errors/errors.ts';

/** The metrics one app server exposes at /metrics; `admission` is read at each scrape. */
export function createMetrics(options: { admission?: () => AdmissionStats; sendTurns?: () => { waiting: number; shed: number } } = {}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'parley_' });
  const admission = options.admission;
  const sendTurns = options.sendTurns;
  if (sendTurns) {
    // chat/turns.ts: a conversation's sends take turns before they ask for a connection.
    new Gauge({
      name: 'parley_send_turn_waiting',
      help: "Sends waiting for their conversation's turn on this app server (at most 2 per conversation hold a connection)",
      registers: [registry],
      collect() {
        this.set(sendTurns().waiting);
      },
    });
    new Counter({
      name: 'parley_send_turn_shed_total',
      help: "Sends answered 503 overloaded because their conversation's turn did not come in time (or too many waited for it)",
      registers: [registry],
      collect() {
        this.reset();
        this.inc(sendTurns().shed);
      },
    });
  }
  if (admission) {
    // The data layer keeps the totals (they include typing frames shed on sockets and fan-out
    // reads that no HTTP answer reports); these only show them.
    new Counter({
      name: 'parley_admission_shed_total',
      help: 'Database requests shed (answered 503 overloaded without running) by class (send, read, typing) and reason (queue-full, wait-timeout, stalled, standing-queue)',
      labelNames: ['class', 'reason'] as const,
      registers: [registry],
      collect() {
        const stats = admission();
        this.reset();
        for (const p of priorities) for (const [reason, count] of Object.entries(stats.shed[p])) this.inc({ class: p, reason }, count);
      },
    });
    new Counter({
      name: 'parley_admission_admitted_total',
      help: 'Database requests admitted to a connection, by class (send, read, typing)',
      labelNames: ['class'] as const,
      registers: [registry],
      collect() {
        const stats = admission();
        this.reset();
        for (const p of priorities) this.inc({ class: p }, stats.admitted[p]);
      },
    });
    new Gauge({
      name: 'parley_admission_waiting',
      help: 'Database requests waiting for a connection now, by class',
      labelNames: ['class'] as const,
      registers: [registry],
      collect() {
        const stats = admission();
        for (const p of priorities) this.set({ class: p }, stats.waiting[p]);
      },
    });
  }
  return {
    registry,
    httpDuration: new Histogram({
      name: 'parley_http_request_duration_seconds',
      help: 'HTTP request latency by route, method and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    errors: new Counter({
      name: 'parley_errors_total',
      help: 'Errors answered, by stable code, route and the dependency behind them',
      labelNames: ['code', 'route', 'dependency'] as const,
      registers: [registry],
    }),
    messagesSent: new Counter({
      name: 'parley_messages_sent_total',
      help: 'Messages stored (new, not retries), by transport',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    databaseErrors: new Counter({
      name: 'parley_database_errors_total',
      help: 'Requests answered 503 because of the database, by node, pool (primary or read) and cause (timeout, refused, lost, read-only, breaker-open, shed, no-primary)',
      labelNames: ['node', 'pool', 'cause'] as const,
      registers: [registry],
    }),
    sockets: new Gauge({ name: 'parley_websocket_connections', help: 'Open WebSocket connections', registers: [registry] }),
    socketsDropped: new Counter({
      name: 'parley_websocket_dropped_total',
      help: 'WebSocket connections closed by the server, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    readPoolMember: new Gauge({
      name: 'parley_read_pool_member',
      help: 'Standbys this app server sends reads to now (1); the ops process reads it for StandbyOutOfReadPool',
      labelNames: ['node'] as const,
      registers: [registry],
    }),
    pool: new Gauge({
      name: 'parley_db_pool_connections',
      help: 'Database pool connections by state',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
  };
}

/** The metrics object. */
export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Counts an answered ParleyError once, wherever it is answered (HTTP or a socket's error frame):
 * by code and route, and for the database's (`storage_unavailable`, `overloaded`) by node, pool and
 * cause — a shed request has cause `shed`.
 */
export function countError(metrics: Metrics, error: unknown, route: string): void {
  if (!isParleyError(error)) return;
  const fromDatabase = error.code === 'storage_unavailable' || error.code === 'overloaded';
  metrics.errors.inc({ code: error.code, route, dependency: fromDatabase ? 'database' : 'none' });
  if (fromDatabase) {
    const origin = failureOrigin(error);
    metrics.databaseErrors.inc({ node: origin?.node ?? 'unknown', pool: origin?.pool ?? 'none', cause: origin?.cause ?? (error.code === 'overloaded' ? 'shed' : 'other') });
  }
}
