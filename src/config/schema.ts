// The one schema for every Parley setting. Every key has a default, so an empty file (or none)
// is a valid configuration; unknown keys are errors. Units go last in names (`leaseTtlMs`).
import { z } from 'zod';
import { alertingConfigSchema } from './alerting-schema.ts';

const port = z.number().int().min(1).max(65535);
const host = z.string().min(1);

/** The whole configuration. `z.input` of it is what a file may say; `Config` is what code sees. */
export const configSchema = z
  .strictObject({
    cluster: z
      .strictObject({
        /** PostgreSQL nodes on this machine. */
        nodes: z.number().int().min(1).max(9).default(3),
        /** How long a primary's lease lasts without renewal. */
        leaseTtlMs: z.number().int().min(1000).max(120_000).default(3000),
        /** How often each agent observes and decides. */
        loopIntervalMs: z.number().int().min(50).max(10_000).default(500),
        /** A failover ends (new primary or rollback) within this time. */
        failoverDeadlineMs: z.number().int().min(1000).max(600_000).default(30_000),
        /** A standby further behind than this is never promoted automatically. */
        maximumLagOnFailoverBytes: z.number().int().min(0).default(1_048_576),
        /** A primary whose PostgreSQL stays down this long (restarts failing) gives up its lease. */
        primaryStartTimeoutMs: z.number().int().min(1000).max(3_600_000).default(30_000),
      })
      .prefault({}),
    postgres: z
      .strictObject({
        /** Directory of the server binaries; found automatically when empty. */
        bin: z.string().default(''),
        /** Port of the first node; node N listens on basePort + N - 1. */
        basePort: port.default(5433),
        /** OS account that runs the server when Parley runs as root. */
        osUser: z.string().min(1).default('postgres'),
        maxConnections: z.number().int().min(20).max(10_000).default(200),
        sharedBuffers: z.string().regex(/^\d+(kB|MB|GB)$/, 'must look like 128MB').default('128MB'),
      })
      .prefault({}),
    http: z
      .strictObject({
        host: host.default('127.0.0.1'),
        port: port.default(8080),
        /** Largest request body accepted. */
        bodyLimitBytes: z.number().int().min(1024).max(10_485_760).default(65_536),
        /** Requests per account per minute before 429. */
        rateLimitPerMinute: z.number().int().min(1).max(1_000_000).default(1200),
      })
      .prefault({}),
    websocket: z
      .strictObject({
        /** Bytes queued for one slow socket before it is disconnected (it catches up with sync). */
        sendBufferMaxBytes: z.number().int().min(16_384).max(67_108_864).default(1_048_576),
        pingIntervalMs: z.number().int().min(1000).max(300_000).default(30_000),
        /** Largest frame a client may send. */
        frameMaxBytes: z.number().int().min(1024).max(1_048_576).default(16_384),
        /** Sockets one app server accepts before refusing with 503. */
        connectionsMax: z.number().int().min(1).max(1_000_000).default(50_000),
      })
      .prefault({}),
    app: z
      .strictObject({
        /** App servers started by `parley up`, on consecutive ports from http.port. */
        servers: z.number().int().min(1).max(16).default(1),
        /** Session lifetime without use. */
        sessionTtlHours: z.number().int().min(1).max(24 * 365).default(24 * 30),
      })
      .prefault({}),
    data: z
      .strictObject({
        poolSize: z.number().int().min(1).max(500).default(10),
        /** A query that runs longer is cancelled and answered 503. */
        queryTimeoutMs: z.number().int().min(100).max(120_000).default(5000),
        /** How long a request may wait for a free connection. */
        connectTimeoutMs: z.number().int().min(100).max(60_000).default(3000),
        /** How long a query waits for a primary during a failover or switchover before 503. */
        failoverWaitMs: z.number().int().min(0).max(60_000).default(5000),
        /** A standby further behind the primary than this many bytes of WAL leaves the read pool. */
        readMaxLagBytes: z.number().int().min(0).max(1024 ** 3).default(16 * 1024 * 1024),
        /** ... or one that has not replayed what the primary had this long ago. */
        readMaxLagMs: z.number().int().min(0).max(600_000).default(1000),
      })
      .prefault({}),
    maintenance: z
      .strictObject({
        /** How long `parley maintenance start` lasts without --ttl. */
        defaultTtlMs: z.number().int().min(1000).max(7 * 24 * 3_600_000).default(3_600_000),
        /** The longest --ttl accepted: maintenance always ends by itself. */
        maxTtlMs: z.number().int().min(1000).max(7 * 24 * 3_600_000).default(8 * 3_600_000),
        /** How long `start` and `stop` wait for every live agent to acknowledge. */
        acknowledgeTimeoutMs: z.number().int().min(1000).max(120_000).default(10_000),
        /** How long `maintenance run` waits, after its command, for the cluster to be healthy again. */
        recoverTimeoutMs: z.number().int().min(1000).max(3_600_000).default(120_000),
      })
      .prefault({}),
    /** Channels, delivery, rota, policies, heartbeat, acknowledgement links (alerting-schema.ts). */
    alerting: alertingConfigSchema,
    ops: z
      .strictObject({
        /** Where the ops process serves /metrics and the ops API (deploy/prometheus scrapes 9187). */
        host: host.default('127.0.0.1'),
        /** 0 picks a free port (DIR/ops.json says which). */
        port: z.number().int().min(0).max(65535).default(9187),
        /** How often the ops process samples the cluster and evaluates the alert rules. */
        sampleIntervalMs: z.number().int().min(200).max(60_000).default(1000),
        /** The alert rules file; empty means the shipped src/monitor/rules.yaml. */
        rulesFile: z.string().default(''),
        /** The supervisor raises the fallback alert when the ops process has not answered, or not run alerting, for this long. */
        silentAfterMs: z.number().int().min(2000).max(600_000).default(15_000),
      })
      .prefault({}),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .prefault({}),
  })
  .superRefine((config, ctx) => {
    // Dangerous combinations: a lease must outlive several agent loops, or a healthy primary
    // loses it between two renewals and the cluster fails over for nothing.
    if (config.cluster.leaseTtlMs < 3 * config.cluster.loopIntervalMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['cluster', 'leaseTtlMs'],
        message: `must be at least 3 × cluster.loopIntervalMs (${3 * config.cluster.loopIntervalMs}); a primary would lose its lease between renewals`,
      });
    }
    if (config.cluster.failoverDeadlineMs < 2 * config.cluster.leaseTtlMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['cluster', 'failoverDeadlineMs'],
        message: `must be at least 2 × cluster.leaseTtlMs (${2 * config.cluster.leaseTtlMs}); a failover could never finish in time`,
      });
    }
    if (config.cluster.primaryStartTimeoutMs < 2 * config.cluster.leaseTtlMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['cluster', 'primaryStartTimeoutMs'],
        message: `must be at least 2 × cluster.leaseTtlMs (${2 * config.cluster.leaseTtlMs}); a restart in place needs more than one lease term`,
      });
    }
    if (config.maintenance.defaultTtlMs > config.maintenance.maxTtlMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['maintenance', 'defaultTtlMs'],
        message: `must not exceed maintenance.maxTtlMs (${config.maintenance.maxTtlMs})`,
      });
    }
    // Alerting's cross-references (duplicate names, targets that name nothing, the two-channel
    // rule) need the escalation core, so alerting/'s checkAlertingConfig finds them, not this schema.
    const lastPort = config.http.port + config.app.servers - 1;
    const pgPorts = [config.postgres.basePort, config.postgres.basePort + config.cluster.nodes - 1];
    if (lastPort >= pgPorts[0]! && config.http.port <= pgPorts[1]!) {
      ctx.addIssue({
        code: 'custom',
        path: ['http', 'port'],
        message: `app server ports ${config.http.port}-${lastPort} overlap PostgreSQL ports ${pgPorts[0]}-${pgPorts[1]}`,
      });
    }
  });

/** The configuration as code sees it, every default filled in. */
export type Config = z.output<typeof configSchema>;
/** What a configuration file may say. */
export type ConfigInput = z.input<typeof configSchema>;
