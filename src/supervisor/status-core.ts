// The shape of `parley status --json` (documented in docs/cli.md) and its human table. Pure: the
// shell probes the processes; this file only shapes and prints what it found.

/** One PostgreSQL node as `parley status` reports it. */
export interface NodeStatus {
  name: string;
  role: 'primary' | 'standby' | 'down';
  /** running: answers queries; unresponsive: process alive, queries fail; stopped: no process. */
  state: 'running' | 'unresponsive' | 'stopped';
  port: number;
  pid: number | null;
  /** The node's failover agent; null while it is down. */
  agentPid: number | null;
  /** WAL position: insert LSN on a primary, replay LSN on a standby; null when down. */
  lsn: string | null;
  /** Replication lag behind the primary; null on the primary and on nodes that are down. */
  lagBytes: number | null;
  lagSeconds: number | null;
  /** The standby's sync state as the primary sees it (sync, quorum, potential, async); null on the primary. */
  sync: string | null;
  /** Why the node is not running, when it is not. */
  detail?: string;
}

/** One app server as `parley status` reports it. */
export interface AppServerStatus {
  url: string;
  pid: number | null;
  /** ok: /healthz answers 200; unhealthy: process alive, /healthz fails; down: no process. */
  state: 'ok' | 'unhealthy' | 'down';
}

/** The whole `parley status --json` document. */
export interface ClusterStatus {
  /** Name of the node that answers as primary, or null when none does. */
  primary: string | null;
  /** null while maintenance is off (never started, stopped, or past its expiry). */
  maintenance: null | { reason: string; owner: string; since: string; expiresAt: string; node: string | null };
  /** The leader lease: who holds (or last held) it, until when, and whether the term runs. */
  lease: { holder: string; expiresAt: string; active: boolean } | null;
  nodes: NodeStatus[];
  appServers: AppServerStatus[];
  /** Firing alerts as `parley alerts --json` lists them (docs/cli.md); empty when the ops process cannot be asked. */
  alerts: { id: string; name: string; severity: string; node: string | null; summary: string; startsAt: string | null }[];
  supervisor: { pid: number; startedAt: string; dir: string; state: 'starting' | 'up' | 'stopping' };
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd());
}

function dash(value: string | number | null | undefined): string {
  return value === null || value === undefined ? '-' : String(value);
}

/** The short human view printed by `parley status` without --json. */
export function formatStatus(status: ClusterStatus): string {
  const { supervisor } = status;
  const lines = [
    `Parley in ${supervisor.dir}: ${supervisor.state} (supervisor pid ${supervisor.pid}, since ${supervisor.startedAt})`,
    `primary: ${status.primary ?? 'none'}    lease: ${status.lease ? `${status.lease.holder} ${status.lease.active ? `until ${status.lease.expiresAt}` : '(term ended)'}` : 'unknown'}    maintenance: ${status.maintenance ? `on${status.maintenance.node ? ` for ${status.maintenance.node}` : ''} (${status.maintenance.reason}, by ${status.maintenance.owner}, until ${status.maintenance.expiresAt})` : 'off'}`,
    '',
    ...table([
      ['NODE', 'ROLE', 'STATE', 'PORT', 'PID', 'AGENT', 'LSN', 'LAG', 'SYNC'],
      ...status.nodes.map((node) => [
        node.name,
        node.role,
        node.state + (node.detail ? ` (${node.detail})` : ''),
        String(node.port),
        dash(node.pid),
        dash(node.agentPid),
        dash(node.lsn),
        node.lagBytes === null ? '-' : `${node.lagBytes} B${node.lagSeconds === null ? '' : ` / ${node.lagSeconds.toFixed(1)} s`}`,
        dash(node.sync),
      ]),
    ]),
    '',
    ...table([['APP SERVER', 'PID', 'STATE'], ...status.appServers.map((app) => [app.url, dash(app.pid), app.state])]),
    '',
    status.alerts.length === 0 ? 'alerts: none firing' : `alerts firing (${status.alerts.length}):`,
    ...status.alerts.map((a) => `  ${a.severity} ${a.name}${a.node ? ` (${a.node})` : ''}: ${a.summary}`),
  ];
  return lines.join('\n');
}
