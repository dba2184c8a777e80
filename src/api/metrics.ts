// Prometheus metrics of one app server: per-route latency, errors by code, sockets, pool.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The metrics one app server exposes at /metrics. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'parley_' });
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
