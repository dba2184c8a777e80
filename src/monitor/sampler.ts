// The sampler: one `Sample` of the whole cluster a second (samples.ts says what every field means).
// It asks each PostgreSQL node directly (one connection of its own per node, every query bounded),
// reads the lease store for the lease, maintenance and the agents' published states, scrapes each
// app server's /metrics, and reads the free space of each data directory. Everything it could not
// read is null, never 0 (postgres_exporter's blind spot, its PR #977).
//
// It also writes the heartbeat row (`parley_heartbeat` in the `postgres` database) on the primary
// every second. A standby's lag in seconds is the age of the newest heartbeat it has replayed, so an
// idle primary reads about a second, and a standby that stopped replaying grows by one a second.
// The write uses `synchronous_commit = local`: a heartbeat must never wait for a standby that is
// down, or it would stop exactly when it is needed.
import { statfs } from 'node:fs/promises';
import pg from 'pg';
import { withTimeout } from '../data/data.ts';
import { candidateFreshnessMs, leaseKeys, type LeaseStore, type MaintenanceRecord, type MemberState } from '../failover/failover.ts';
import { parsePrometheusText, type PromSeries } from './promtext.ts';
import {
  syncStates,
  walReceiverStatuses,
  type AppServerSample,
  type ErrorRate,
  type NodeSample,
  type PrimarySample,
  type Sample,
  type SyncState,
  type WalReceiverStatus,
} from './samples.ts';

/** One PostgreSQL node the sampler watches. */
export interface SampledNode {
  name: string;
  /** Connection string of a role that may read pg_stat_* and write the heartbeat (the superuser). */
  url: string;
  dataDir: string;
}

/** One app server the sampler scrapes. */
export interface SampledAppServer {
  name: string;
  /** Base URL; `/metrics` is appended. */
  url: string;
}

export interface SamplerOptions {
  nodes: readonly SampledNode[];
  appServers: readonly SampledAppServer[];
  lease: LeaseStore;
  /** From the `cluster` settings: what makes a standby a failover candidate. */
  cluster: { maximumLagOnFailoverBytes: number; loopIntervalMs: number };
  /** Bound on every query and scrape of one round. */
  timeoutMs?: number;
  /** Window over which `...PerSec` rates are averaged. */
  rateWindowMs?: number;
}

/** The raw counters behind the sample's rates, for /metrics (Prometheus computes its own rates). */
export interface SampleTotals {
  commits: { node: string; value: number }[];
  requests: { server: string; value: number }[];
  errors: { server: string; cause: string; dependency: string; value: number }[];
}

export interface Sampler {
  /** Takes one sample; never throws (what cannot be read is null). */
  sample(now: number): Promise<Sample>;
  /** The counters read by the last sample. */
  totals(): SampleTotals;
  /** Writes the heartbeat row on the node last seen as primary; false when it could not. */
  heartbeat(): Promise<boolean>;
  close(): Promise<void>;
}

/** Counters kept to turn totals into rates over a trailing window. */
interface CounterPoint {
  atMs: number;
  value: number;
}

const defaultTimeoutMs = 800;
const defaultRateWindowMs = 10_000;

/** `X/Y` → byte offset. Offsets stay below 2^53 for any real cluster (8 PiB of WAL). */
export function lsnBytes(lsn: string | null | undefined): number | null {
  if (!lsn) return null;
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!match) return null;
  return Number.parseInt(match[1]!, 16) * 2 ** 32 + Number.parseInt(match[2]!, 16);
}

/** A counter's rate over the trailing window, from points oldest first. */
export function trailingRate(points: readonly CounterPoint[], now: number, windowMs: number): number {
  const recent = points.filter((p) => p.atMs >= now - windowMs);
  if (recent.length < 2) return 0;
  const first = recent[0]!;
  const last = recent[recent.length - 1]!;
  const seconds = (last.atMs - first.atMs) / 1000;
  // A counter that went down was reset (a restarted process): count from the reset.
  const delta = last.value >= first.value ? last.value - first.value : last.value;
  return seconds > 0 ? delta / seconds : 0;
}

class Rates {
  private readonly points = new Map<string, CounterPoint[]>();
  constructor(private readonly windowMs: number) {}

  add(key: string, atMs: number, value: number): number {
    let list = this.points.get(key);
    if (!list) this.points.set(key, (list = []));
    list.push({ atMs, value });
    while (list.length > 0 && list[0]!.atMs < atMs - this.windowMs - 2000) list.shift();
    return trailingRate(list, atMs, this.windowMs);
  }

  /** Keys not seen since `before` are forgotten (a series that vanished). */
  forgetOlderThan(before: number): void {
    for (const [key, list] of this.points) if ((list[list.length - 1]?.atMs ?? 0) < before) this.points.delete(key);
  }
}

/** One connection per node, reopened after any failure; a query that outlives the bound ends the connection. */
class NodeConnection {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;

  constructor(
    private readonly url: string,
    private readonly timeoutMs: number,
  ) {}

  private async connect(): Promise<pg.Client> {
    if (this.client) return this.client;
    if (!this.connecting) {
      const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: this.timeoutMs, application_name: 'parley-ops' });
      client.on('error', () => this.drop(client));
      this.connecting = client
        .connect()
        .then(async () => {
          await client.query(`SET statement_timeout = ${this.timeoutMs}; SET synchronous_commit = local`);
          this.client = client;
          return client;
        })
        .catch((error: unknown) => {
          void client.end().catch(() => undefined);
          throw error;
        })
        .finally(() => {
          this.connecting = undefined;
        });
    }
    return this.connecting;
  }

  private drop(client: pg.Client): void {
    if (this.client === client) this.client = undefined;
    void client.end().catch(() => undefined);
  }

  /** Runs a query within the bound; a frozen server (no answer at all) is cut off, not waited for. */
  async query<R extends pg.QueryResultRow>(text: string): Promise<R[]> {
    const client = await withTimeout(this.connect(), this.timeoutMs);
    try {
      const result = await withTimeout(client.query<R>(text), this.timeoutMs);
      return result.rows;
    } catch (error) {
      this.drop(client);
      throw error;
    }
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) await withTimeout(client.end(), 1000).catch(() => undefined);
  }
}

interface NodeReading {
  reachable: boolean;
  role: 'primary' | 'standby' | 'unknown';
  currentLsn: number | null;
  receiveLsn: number | null;
  replayLsn: number | null;
  walReceiverStatus: WalReceiverStatus | null;
  lastMsgReceiptMs: number | null;
  heartbeatMs: number | null;
  replicas: { name: string; sent: number | null; write: number | null; flush: number | null; replay: number | null; syncState: SyncState | null }[];
  load: { connections: number; active: number; waiting: number; maxConnections: number; commits: number } | null;
}

const unreachable: NodeReading = {
  reachable: false,
  role: 'unknown',
  currentLsn: null,
  receiveLsn: null,
  replayLsn: null,
  walReceiverStatus: null,
  lastMsgReceiptMs: null,
  heartbeatMs: null,
  replicas: [],
  load: null,
};

const heartbeatTable = 'parley_heartbeat';

interface HeadRow {
  recovery: boolean;
  current: string | null;
  receive: string | null;
  replay: string | null;
  heartbeat_ms: string | null;
}

/** Reads one node: role, WAL positions, its receiver (standby) or its replicas and load (primary). */
async function readNode(connection: NodeConnection): Promise<NodeReading> {
  try {
    const headQuery = (heartbeat: string): Promise<HeadRow[]> =>
      connection.query<HeadRow>(
        `SELECT pg_is_in_recovery() AS recovery,
                CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current,
                pg_last_wal_receive_lsn()::text AS receive,
                pg_last_wal_replay_lsn()::text AS replay,
                ${heartbeat} AS heartbeat_ms`,
      );
    const [head] = await headQuery(`(SELECT (extract(epoch FROM at) * 1000)::bigint::text FROM ${heartbeatTable} WHERE id = 1)`).catch((error: unknown) => {
      // Before the first heartbeat the table does not exist yet: read the rest without it.
      if ((error as { code?: string }).code !== '42P01') throw error;
      return headQuery('NULL');
    });
    if (!head) return unreachable;
    const reading: NodeReading = {
      ...unreachable,
      reachable: true,
      role: head.recovery ? 'standby' : 'primary',
      currentLsn: lsnBytes(head.current),
      receiveLsn: lsnBytes(head.receive),
      replayLsn: lsnBytes(head.replay),
      heartbeatMs: head.heartbeat_ms === null ? null : Number(head.heartbeat_ms),
    };
    if (head.recovery) {
      const [receiver] = await connection.query<{ status: string; last_ms: string | null }>(
        `SELECT status, (extract(epoch FROM last_msg_receipt_time) * 1000)::bigint::text AS last_ms FROM pg_stat_wal_receiver`,
      );
      if (receiver) {
        reading.walReceiverStatus = walReceiverStatuses.includes(receiver.status as WalReceiverStatus) ? (receiver.status as WalReceiverStatus) : null;
        reading.lastMsgReceiptMs = receiver.last_ms === null ? null : Number(receiver.last_ms);
      }
    } else {
      const replicas = await connection.query<{ name: string; sent: string | null; write: string | null; flush: string | null; replay: string | null; sync_state: string }>(
        `SELECT application_name AS name, sent_lsn::text AS sent, write_lsn::text AS write, flush_lsn::text AS flush,
                replay_lsn::text AS replay, sync_state FROM pg_stat_replication`,
      );
      reading.replicas = replicas.map((r) => ({
        name: r.name,
        sent: lsnBytes(r.sent),
        write: lsnBytes(r.write),
        flush: lsnBytes(r.flush),
        replay: lsnBytes(r.replay),
        syncState: syncStates.includes(r.sync_state as SyncState) ? (r.sync_state as SyncState) : null,
      }));
      const [load] = await connection.query<{ connections: number; active: number; waiting: number; max: number; commits: string }>(
        `SELECT count(*) FILTER (WHERE backend_type = 'client backend')::int AS connections,
                count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid())::int AS active,
                count(*) FILTER (WHERE backend_type = 'client backend' AND wait_event_type = 'Lock')::int AS waiting,
                current_setting('max_connections')::int AS max,
                (SELECT sum(xact_commit) FROM pg_stat_database)::text AS commits
           FROM pg_stat_activity`,
      );
      if (load) reading.load = { connections: load.connections, active: load.active, waiting: load.waiting, maxConnections: load.max, commits: Number(load.commits) };
    }
    return reading;
  } catch {
    return unreachable;
  }
}

async function readDisk(dir: string): Promise<{ free: number | null; total: number | null }> {
  try {
    const stats = await statfs(dir);
    return { free: stats.bavail * stats.bsize, total: stats.blocks * stats.bsize };
  } catch {
    return { free: null, total: null };
  }
}

async function scrape(url: string, timeoutMs: number): Promise<PromSeries[] | null> {
  try {
    const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return null;
    return parsePrometheusText(await response.text());
  } catch {
    return null;
  }
}

interface LeaseReading {
  lease: { holder: string; expiresAtMs: number; acquiredAtMs: number; released: boolean } | null;
  maintenance: MaintenanceRecord | null;
  members: Map<string, MemberState>;
  ok: boolean;
}

async function readLease(store: LeaseStore): Promise<LeaseReading> {
  try {
    const [leader, maintenance, members] = await Promise.all([
      store.get(leaseKeys.leader),
      store.get(leaseKeys.maintenance),
      store.list(leaseKeys.memberPrefix),
    ]);
    const byName = new Map<string, MemberState>();
    for (const entry of members) {
      try {
        const state = JSON.parse(entry.value) as MemberState;
        byName.set(state.name, state);
      } catch {
        // a half-written value: skip this one, the next round reads it again
      }
    }
    return {
      ok: true,
      lease: leader ? (JSON.parse(leader.value) as LeaseReading['lease']) : null,
      maintenance: maintenance ? ({ ...(JSON.parse(maintenance.value) as Omit<MaintenanceRecord, 'revision'>), revision: maintenance.revision } as MaintenanceRecord) : null,
      members: byName,
    };
  } catch {
    return { ok: false, lease: null, maintenance: null, members: new Map() };
  }
}

/** Creates the sampler; connections open lazily on the first sample. */
export function createSampler(options: SamplerOptions): Sampler {
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  const rates = new Rates(options.rateWindowMs ?? defaultRateWindowMs);
  const connections = new Map(options.nodes.map((node) => [node.name, new NodeConnection(node.url, timeoutMs)]));
  const appLastSeen = new Map<string, number>();
  // The agents' own rule: a member's state older than this does not make it a candidate.
  const freshnessMs = candidateFreshnessMs({ loopIntervalMs: options.cluster.loopIntervalMs } as Parameters<typeof candidateFreshnessMs>[0]);
  let lastPrimary: string | null = null;
  /** When the sampler first saw no running primary (the start of a failover), or null. */
  let noPrimarySinceMs: number | null = null;
  let heartbeatRunning = false;
  let totals: SampleTotals = { commits: [], requests: [], errors: [] };

  return {
    async sample(now: number): Promise<Sample> {
      const [readings, leaseReading, disks, scrapes] = await Promise.all([
        Promise.all(options.nodes.map((node) => readNode(connections.get(node.name)!))),
        readLease(options.lease),
        Promise.all(options.nodes.map((node) => readDisk(node.dataDir))),
        Promise.all(options.appServers.map((app) => scrape(app.url, timeoutMs))),
      ]);
      const primaries = options.nodes.map((node, i) => ({ node, reading: readings[i]! })).filter((x) => x.reading.role === 'primary');
      // Two primaries is its own alert (MultiplePrimaries); lag is measured against the lease holder then.
      const primaryEntry = primaries.find((p) => p.node.name === leaseReading.lease?.holder) ?? primaries[0];
      const primaryReading = primaryEntry?.reading;
      if (primaryEntry) lastPrimary = primaryEntry.node.name;
      const primaryLsn = primaryReading?.currentLsn ?? null;

      // Read pool membership as the app servers report it (parley_read_pool_member{node}); with
      // several app servers a node is in the pool when any of them reads from it.
      const readPool = new Set<string>();
      scrapes.forEach((series, i) => {
        if (series === null) return;
        appLastSeen.set(options.appServers[i]!.name, now);
        for (const s of series) if (s.name === 'parley_read_pool_member' && s.value === 1 && s.labels.node) readPool.add(s.labels.node);
      });

      const maintenance = leaseReading.maintenance;
      const maintenanceOn = maintenance !== null && maintenance.active && maintenance.expiresAtMs > now;
      const primaryFlush = primaryLsn;

      const nodes: NodeSample[] = options.nodes.map((node, i) => {
        const reading = readings[i]!;
        const member = leaseReading.members.get(node.name);
        const replica = primaryReading?.replicas.find((r) => r.name === node.name);
        const isStandby = reading.role === 'standby';
        const replay = isStandby ? (reading.replayLsn ?? replica?.replay ?? null) : reading.role === 'primary' ? reading.currentLsn : (replica?.replay ?? null);
        const lagBytes = reading.role === 'primary' ? 0 : isStandby && primaryLsn !== null && replay !== null ? Math.max(0, primaryLsn - replay) : null;
        const lagSeconds =
          reading.role === 'primary' ? 0 : isStandby && reading.heartbeatMs !== null ? Math.max(0, (now - reading.heartbeatMs) / 1000) : null;
        const fresh = member !== undefined && now - member.publishedAtMs <= freshnessMs;
        const candidate =
          isStandby &&
          fresh &&
          member.running &&
          member.role === 'standby' &&
          member.streaming &&
          !(maintenanceOn && (maintenance.node ?? null) === node.name) &&
          primaryFlush !== null &&
          primaryFlush - member.flushedLsn <= options.cluster.maximumLagOnFailoverBytes;
        return {
          name: node.name,
          role: reading.role,
          reachable: reading.reachable,
          agentLastSeenMs: member?.publishedAtMs ?? null,
          walReceiverStatus: isStandby ? reading.walReceiverStatus : null,
          lastMsgReceiptMs: isStandby ? reading.lastMsgReceiptMs : null,
          sentLsn: replica?.sent ?? null,
          writeLsn: replica?.write ?? (isStandby ? reading.receiveLsn : null),
          flushLsn: replica?.flush ?? (isStandby ? reading.receiveLsn : reading.currentLsn),
          replayLsn: replay,
          lagBytes,
          lagSeconds,
          syncState: isStandby ? (replica?.syncState ?? null) : null,
          inReadPool: readPool.has(node.name),
          candidate,
          diskFreeBytes: disks[i]!.free,
          diskTotalBytes: disks[i]!.total,
        };
      });

      const nextTotals: SampleTotals = { commits: [], requests: [], errors: [] };
      let primary: PrimarySample | null = null;
      if (primaryEntry && primaryReading?.load) {
        const load = primaryReading.load;
        nextTotals.commits.push({ node: primaryEntry.node.name, value: load.commits });
        primary = {
          name: primaryEntry.node.name,
          connections: load.connections,
          active: load.active,
          waiting: load.waiting,
          maxConnections: load.maxConnections,
          commitsPerSec: rates.add(`commits:${primaryEntry.node.name}`, now, load.commits),
        };
      }

      const appServers: AppServerSample[] = options.appServers.map((app, i) => {
        const series = scrapes[i];
        if (series === null || series === undefined) return { name: app.name, lastSeenMs: appLastSeen.get(app.name) ?? null, requestsPerSec: 0, errors: [] };
        // Requests of people, not the scrapes of this sampler (or of Prometheus).
        const requests = series
          .filter((s) => s.name === 'parley_http_request_duration_seconds_count' && s.labels.route !== '/metrics')
          .reduce((sum, s) => sum + s.value, 0);
        nextTotals.requests.push({ server: app.name, value: requests });
        const errors: ErrorRate[] = [];
        const byKey = new Map<string, number>();
        for (const s of series) {
          if (s.name !== 'parley_database_errors_total') continue;
          const key = `${s.labels.cause ?? 'other'}\u0000${s.labels.node ?? 'unknown'}`;
          byKey.set(key, (byKey.get(key) ?? 0) + s.value);
        }
        for (const [key, total] of byKey) {
          const [cause, dependency] = key.split('\u0000') as [string, string];
          nextTotals.errors.push({ server: app.name, cause, dependency, value: total });
          const perSec = rates.add(`errors:${app.name}:${key}`, now, total);
          if (perSec > 0) errors.push({ cause, dependency, perSec });
        }
        return { name: app.name, lastSeenMs: now, requestsPerSec: rates.add(`requests:${app.name}`, now, requests), errors };
      });
      rates.forgetOlderThan(now - 60_000);
      totals = nextTotals;

      // A failover is under way while no node runs as the lease holder's primary and maintenance
      // does not hold failover back; it started when the sampler first saw that (or when the
      // lease expired, if earlier).
      const lease = leaseReading.lease;
      const holderIsPrimary = lease !== null && !lease.released && lease.expiresAtMs > now && primaries.some((p) => p.node.name === lease.holder);
      const wholeMaintenance = maintenanceOn && (maintenance.node ?? null) === null;
      let failover: Sample['failover'] = null;
      if (leaseReading.ok && !holderIsPrimary && !wholeMaintenance && options.nodes.length > 1) {
        noPrimarySinceMs ??= lease !== null && lease.expiresAtMs <= now ? Math.min(now, lease.expiresAtMs) : now;
        failover = { inProgress: true, startedAtMs: noPrimarySinceMs };
      } else if (holderIsPrimary || wholeMaintenance) {
        noPrimarySinceMs = null;
      }

      return {
        timestampMs: now,
        nodes,
        primary,
        appServers,
        lease: leaseReading.ok ? { holder: lease?.holder ?? null, expiresAtMs: lease?.expiresAtMs ?? 0 } : null,
        failover,
        maintenance: maintenance ? { on: maintenance.active, expiresAtMs: maintenance.expiresAtMs, reason: maintenance.reason, node: maintenance.node ?? null } : null,
      };
    },

    totals: () => totals,

    async heartbeat(): Promise<boolean> {
      if (heartbeatRunning || lastPrimary === null) return false;
      const connection = connections.get(lastPrimary);
      if (!connection) return false;
      heartbeatRunning = true;
      try {
        const write = `INSERT INTO ${heartbeatTable} VALUES (1, clock_timestamp()) ON CONFLICT (id) DO UPDATE SET at = excluded.at`;
        await connection.query(write).catch(async (error: unknown) => {
          if ((error as { code?: string }).code !== '42P01') throw error;
          await connection.query(`CREATE TABLE IF NOT EXISTS ${heartbeatTable} (id int PRIMARY KEY CHECK (id = 1), at timestamptz NOT NULL); ${write}`);
        });
        return true;
      } catch {
        return false;
      } finally {
        heartbeatRunning = false;
      }
    },

    async close(): Promise<void> {
      await Promise.all([...connections.values()].map((c) => c.close()));
    },
  };
}
