// The ops process's /metrics: each sample exported as it stands, with the names, labels and units
// of deploy/prometheus/README.md (the contract Prometheus rules and the Grafana dashboard rely on;
// src/monitor/prometheus-rules.test.ts checks that every metric they use is listed there).
// A value the sampler could not read is left out, never exported as 0, except where the README
// says otherwise. Label sets are rebuilt every sample, so a node that vanished leaves no stale value.
import { Counter, Gauge, Registry } from 'prom-client';
import type { Alert } from './evaluate.ts';
import type { SampleTotals } from './sampler.ts';
import { syncStates, walReceiverStatuses, type Sample } from './samples.ts';

export interface OpsMetrics {
  registry: Registry;
  /** Exports one sample, the counters behind its rates and the alerts that are firing. */
  update(sample: Sample, totals: SampleTotals, firing: readonly Alert[]): void;
}

const seconds = (ms: number): number => ms / 1000;

export function createOpsMetrics(): OpsMetrics {
  const registry = new Registry();
  const gauge = (name: string, help: string, labelNames: string[] = []): Gauge => new Gauge({ name, help, labelNames, registers: [registry] });
  const counter = (name: string, help: string, labelNames: string[]): Counter => new Counter({ name, help, labelNames, registers: [registry] });

  const sampleTime = gauge('parley_sample_timestamp_seconds', 'When the last sample was taken');
  const reachable = gauge('parley_node_reachable', '1 when the probe query answered', ['node']);
  const role = gauge('parley_node_role', '1 for the node role (primary, standby, unknown)', ['node', 'role']);
  const lastSeen = gauge('parley_component_last_seen_timestamp_seconds', 'Last report of each agent and app server; 0 when never seen', ['component', 'name']);
  const streaming = gauge('parley_wal_receiver_streaming', 'Standbys: 1 when the WAL receiver is streaming, 0 otherwise (including no receiver)', ['node']);
  const receiverStatus = gauge('parley_wal_receiver_status', 'Standbys: 1 for the WAL receiver status', ['node', 'status']);
  const lastMessage = gauge('parley_wal_receiver_last_message_timestamp_seconds', "Standby's last_msg_receipt_time", ['node']);
  const lsn = gauge('parley_wal_lsn_bytes', 'WAL positions as byte offsets', ['node', 'position']);
  const lagBytes = gauge('parley_replication_lag_bytes', "Standbys: primary's WAL position minus replay position", ['node']);
  const lagSeconds = gauge('parley_replication_lag_seconds', 'Standbys: age of the newest heartbeat row replayed', ['node']);
  const syncState = gauge('parley_node_sync_state', "Standbys: 1 for the primary's sync_state", ['node', 'state']);
  const readPool = gauge('parley_read_pool_member', '1 when app servers send reads to the node', ['node']);
  const candidate = gauge('parley_failover_candidate', '1 when the node may be promoted', ['node']);
  const diskFree = gauge('parley_disk_free_bytes', 'Free bytes on the file system of the data directory', ['node']);
  const diskTotal = gauge('parley_disk_total_bytes', 'Size of the file system of the data directory', ['node']);
  const connections = gauge('parley_primary_connections', 'Client backends on the primary', ['node']);
  const sessions = gauge('parley_primary_sessions', 'Sessions running, and waiting on a lock, on the primary', ['node', 'state']);
  const maxConnections = gauge('parley_primary_max_connections', "The primary's max_connections", ['node']);
  const commits = counter('parley_primary_commits_total', 'Commits on the primary (pg_stat_database.xact_commit)', ['node']);
  const requests = counter('parley_app_requests_total', 'Requests answered by each app server', ['server']);
  const errors = counter('parley_app_errors_total', 'Database errors seen by each app server, by cause and the node behind them', ['server', 'cause', 'dependency']);
  const holder = gauge('parley_lease_holder', '1 for the node holding the lease', ['node']);
  const leaseExpires = gauge('parley_lease_expires_timestamp_seconds', 'When the lease ends unless renewed');
  const failoverOn = gauge('parley_failover_in_progress', '1 during a failover, else 0');
  const failoverStarted = gauge('parley_failover_started_timestamp_seconds', 'Start of the running failover');
  const maintenanceOn = gauge('parley_maintenance_on', '1 while the maintenance record is on, even past its expiry');
  const maintenanceExpires = gauge('parley_maintenance_expires_timestamp_seconds', 'Expiry of the maintenance record');
  const alertsFiring = gauge('parley_alerts_firing', 'Alerts firing in the built-in evaluator', ['alertname', 'severity', 'node']);

  // Counters follow the totals the sampler read: each export adds the increase since the last one
  // (a total that went down was a restarted process, whose new total is all increase).
  const lastTotals = new Map<string, number>();
  const advance = (metric: Counter, labels: Record<string, string>, value: number): void => {
    const key = `${metric === commits ? 'c' : metric === requests ? 'r' : 'e'}:${JSON.stringify(labels)}`;
    const before = lastTotals.get(key);
    lastTotals.set(key, value);
    const delta = before === undefined ? value : value >= before ? value - before : value;
    if (delta > 0) metric.inc(labels, delta);
    else metric.inc(labels, 0);
  };

  const resettable = [
    reachable, role, lastSeen, streaming, receiverStatus, lastMessage, lsn, lagBytes, lagSeconds, syncState, readPool, candidate,
    diskFree, diskTotal, connections, sessions, maxConnections, holder, leaseExpires, failoverStarted, maintenanceExpires, alertsFiring,
  ];

  return {
    registry,
    update(sample, totals, firing) {
      for (const metric of resettable) metric.reset();
      sampleTime.set(seconds(sample.timestampMs));
      for (const node of sample.nodes) {
        const n = node.name;
        reachable.set({ node: n }, node.reachable ? 1 : 0);
        for (const r of ['primary', 'standby', 'unknown'] as const) role.set({ node: n, role: r }, node.role === r ? 1 : 0);
        lastSeen.set({ component: 'agent', name: n }, node.agentLastSeenMs === null ? 0 : seconds(node.agentLastSeenMs));
        if (node.role === 'standby') {
          streaming.set({ node: n }, node.walReceiverStatus === 'streaming' ? 1 : 0);
          for (const status of [...walReceiverStatuses, 'none'] as const) {
            receiverStatus.set({ node: n, status }, (node.walReceiverStatus ?? 'none') === status ? 1 : 0);
          }
          if (node.lastMsgReceiptMs !== null) lastMessage.set({ node: n }, seconds(node.lastMsgReceiptMs));
          for (const state of [...syncStates, 'none'] as const) syncState.set({ node: n, state }, (node.syncState ?? 'none') === state ? 1 : 0);
        }
        const positions = { sent: node.sentLsn, write: node.writeLsn, flush: node.flushLsn, replay: node.replayLsn };
        for (const [position, value] of Object.entries(positions)) if (value !== null) lsn.set({ node: n, position }, value);
        if (node.role === 'standby' && node.lagBytes !== null) lagBytes.set({ node: n }, node.lagBytes);
        if (node.role === 'standby' && node.lagSeconds !== null) lagSeconds.set({ node: n }, node.lagSeconds);
        readPool.set({ node: n }, node.inReadPool ? 1 : 0);
        candidate.set({ node: n }, node.candidate ? 1 : 0);
        if (node.diskFreeBytes !== null) diskFree.set({ node: n }, node.diskFreeBytes);
        if (node.diskTotalBytes !== null) diskTotal.set({ node: n }, node.diskTotalBytes);
        holder.set({ node: n }, sample.lease?.holder === n ? 1 : 0);
      }
      for (const app of sample.appServers) lastSeen.set({ component: 'app-server', name: app.name }, app.lastSeenMs === null ? 0 : seconds(app.lastSeenMs));
      if (sample.primary) {
        const p = sample.primary;
        connections.set({ node: p.name }, p.connections);
        sessions.set({ node: p.name, state: 'active' }, p.active);
        sessions.set({ node: p.name, state: 'waiting' }, p.waiting);
        maxConnections.set({ node: p.name }, p.maxConnections);
      }
      for (const c of totals.commits) advance(commits, { node: c.node }, c.value);
      for (const r of totals.requests) advance(requests, { server: r.server }, r.value);
      for (const e of totals.errors) advance(errors, { server: e.server, cause: e.cause, dependency: e.dependency }, e.value);
      if (sample.lease) leaseExpires.set(seconds(sample.lease.expiresAtMs));
      failoverOn.set(sample.failover?.inProgress ? 1 : 0);
      if (sample.failover?.inProgress) failoverStarted.set(seconds(sample.failover.startedAtMs));
      maintenanceOn.set(sample.maintenance?.on ? 1 : 0);
      if (sample.maintenance) maintenanceExpires.set(seconds(sample.maintenance.expiresAtMs));
      for (const alert of firing) alertsFiring.set({ alertname: alert.name, severity: alert.severity, node: alert.node ?? '' }, 1);
    },
  };
}
