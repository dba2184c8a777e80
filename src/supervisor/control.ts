// Commands that act on a running `parley up` from another process: `down`, `status` and
// `operator add`. They find it through DIR/supervisor.json and reach PostgreSQL with DIR/secrets.json.
import { createDatabase, appDatabaseName, databaseUrl } from '../data/data.ts';
import { ParleyError } from '../errors/errors.ts';
import { probeReplication, runningPid, stopStrayServer, type ReplicationProbe } from '../postgres/postgres.ts';
import { createLocalLeaseClient, leaseKeys } from '../failover/failover.ts';
import { waitForExit } from './processes.ts';
import { firingAlerts } from './alerts.ts';
import type { AppServerStatus, ClusterStatus, NodeStatus } from './status-core.ts';
import { isAlive, readJson, readSecrets, readState, statePaths, type LeaseFile, type NodeRecord, type Secrets, type SupervisorState } from './state.ts';

// Longer than the supervisor's own bounded stop (app servers, then PostgreSQL's fast shutdown).
const downTimeoutMs = 90_000;
const healthTimeoutMs = 2000;

/** The state of the `up` running in DIR; throws a one-line error when none is. */
export function requireRunning(dir: string): { state: SupervisorState; secrets: Secrets } {
  const paths = statePaths(dir);
  const state = readState(paths);
  if (!state) {
    throw new ParleyError('not_found', `Parley is not running in ${paths.dir} (no supervisor.json); start it with parley up --dir ${paths.dir}`);
  }
  if (!isAlive(state.pid)) {
    throw new ParleyError(
      'not_found',
      `Parley is not running in ${paths.dir}: its supervisor (pid ${state.pid}) is gone without a clean stop; the next parley up cleans up after it`,
    );
  }
  const secrets = readSecrets(paths);
  if (!secrets) throw new ParleyError('not_found', `${paths.secretsFile} is missing`);
  return { state, secrets };
}

/** `parley down`: asks the supervisor to stop (SIGTERM) and waits, bounded, until it is gone. */
export async function stopRunning(options: { dir: string; out?: (line: string) => void }): Promise<{ pid: number }> {
  const out = options.out ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const { state } = requireRunning(options.dir);
  try {
    process.kill(state.pid, 'SIGTERM');
  } catch (error) {
    throw new ParleyError('not_found', `cannot signal the supervisor (pid ${state.pid}): ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  if (!(await waitForExit(state.pid, downTimeoutMs))) {
    throw new ParleyError(
      'internal',
      `the supervisor (pid ${state.pid}) did not stop within ${downTimeoutMs / 1000} s; look at its output, or kill -9 it (the next parley up cleans up)`,
    );
  }
  // The supervisor stops its children before it exits; this only catches one that escaped it.
  const opsPid = state.ops?.pid ?? null;
  if (opsPid !== null && isAlive(opsPid)) {
    out(`the ops process (pid ${opsPid}) outlived the supervisor; stopping it`);
    try {
      process.kill(opsPid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  for (const app of state.appServers) {
    if (app.pid !== null && isAlive(app.pid)) {
      out(`app server on port ${app.port} (pid ${app.pid}) outlived the supervisor; stopping it`);
      try {
        process.kill(app.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
  for (const node of state.nodes) {
    if (node.pid !== null && isAlive(node.pid)) {
      out(`${node.name}: PostgreSQL (pid ${node.pid}) outlived the supervisor; stopping it`);
      await stopStrayServer(node.dataDir, 30_000);
    }
  }
  return { pid: state.pid };
}

async function nodeStatus(node: NodeRecord, secrets: Secrets): Promise<{ status: NodeStatus; probe?: ReplicationProbe }> {
  const pid = runningPid(node.dataDir) ?? null;
  const agentPid = node.agentPid !== undefined && isAlive(node.agentPid) ? node.agentPid : null;
  // Keys in the order docs/cli.md lists them, so the JSON reads the same as the documentation.
  const shape = (role: NodeStatus['role'], state: NodeStatus['state'], lsn: string | null, detail?: string): NodeStatus => ({
    name: node.name,
    role,
    state,
    port: node.port,
    pid,
    agentPid,
    lsn,
    lagBytes: null,
    lagSeconds: null,
    sync: null,
    ...(detail === undefined ? {} : { detail }),
  });
  if (pid === null) return { status: shape('down', 'stopped', null, agentPid === null ? 'agent and PostgreSQL down' : 'PostgreSQL not running') };
  try {
    const probe = await probeReplication({ port: node.port, user: 'postgres', password: secrets.superuserPassword }, 2000);
    return { status: shape(probe.role, 'running', probe.lsn), probe };
  } catch (error) {
    return { status: shape('down', 'unresponsive', null, (error as Error).message.split('\n')[0] || 'probe failed') };
  }
}

async function appStatus(url: string, pid: number | null): Promise<AppServerStatus> {
  if (!isAlive(pid)) return { url, pid, state: 'down' };
  try {
    const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(healthTimeoutMs) });
    await response.body?.cancel();
    return { url, pid, state: response.ok ? 'ok' : 'unhealthy' };
  } catch {
    return { url, pid, state: 'unhealthy' };
  }
}

/** `parley status`: what supervisor.json says is running, checked against the processes themselves. */
export async function readStatus(options: { dir: string }): Promise<ClusterStatus> {
  const { state, secrets } = requireRunning(options.dir);
  const [probed, appServers, { lease, maintenance }] = await Promise.all([
    Promise.all(state.nodes.map((node) => nodeStatus(node, secrets))),
    Promise.all(state.appServers.map((app) => appStatus(app.url, app.pid))),
    readLeaseStore(options.dir),
  ]);
  // Lag and sync state as the primary sees each standby (pg_stat_replication).
  const primaryProbe = probed.find((p) => p.probe?.role === 'primary')?.probe;
  const nodes = probed.map(({ status }) => {
    const replica = primaryProbe?.replicas.find((r) => r.name === status.name);
    if (status.role !== 'standby') return status;
    return { ...status, lagBytes: replica?.lagBytes ?? null, lagSeconds: replica?.lagSeconds ?? null, sync: replica ? replica.syncState : 'not streaming' };
  });
  return {
    primary: nodes.find((node) => node.role === 'primary')?.name ?? null,
    maintenance,
    lease,
    nodes,
    appServers,
    // Firing alerts from the ops process; empty when it cannot be asked (its own alert says why).
    alerts: (await firingAlerts(options.dir)) ?? [],
    supervisor: { pid: state.pid, startedAt: state.startedAt, dir: state.dir, state: state.state },
  };
}

/**
 * The leader record and the active maintenance as the lease store holds them; null each when it
 * cannot be read (or, for maintenance, when none is active: off, stopped, or past its expiry).
 */
async function readLeaseStore(dir: string): Promise<{ lease: ClusterStatus['lease']; maintenance: ClusterStatus['maintenance'] }> {
  const paths = statePaths(dir);
  try {
    const file = readJson<LeaseFile>(paths.leaseFile, 'the lease store address');
    const store = createLocalLeaseClient({ url: file.url, token: file.token, timeoutMs: 1500 });
    try {
      const [leader, maintenanceEntry] = await Promise.all([store.get(leaseKeys.leader), store.get(leaseKeys.maintenance)]);
      const now = Date.now();
      let lease: ClusterStatus['lease'] = null;
      if (leader) {
        const record = JSON.parse(leader.value) as { holder: string; expiresAtMs: number; released: boolean };
        lease = { holder: record.holder, expiresAt: new Date(record.expiresAtMs).toISOString(), active: !record.released && record.expiresAtMs > now };
      }
      let maintenance: ClusterStatus['maintenance'] = null;
      if (maintenanceEntry) {
        const m = JSON.parse(maintenanceEntry.value) as { active: boolean; reason: string; owner: string; startedAtMs: number; expiresAtMs: number; node?: string | null };
        if (m.active && m.expiresAtMs > now) {
          maintenance = { reason: m.reason, owner: m.owner, since: new Date(m.startedAtMs).toISOString(), expiresAt: new Date(m.expiresAtMs).toISOString(), node: m.node ?? null };
        }
      }
      return { lease, maintenance };
    } finally {
      await store.close();
    }
  } catch {
    return { lease: null, maintenance: null };
  }
}

/** `parley operator add`: gives an existing account the operator role, on the current primary. */
export async function addOperator(options: { dir: string; username: string }): Promise<void> {
  const status = await readStatus({ dir: options.dir });
  const { secrets } = requireRunning(options.dir);
  const primary = status.nodes.find((node) => node.role === 'primary');
  if (!primary) throw new ParleyError('storage_unavailable', 'no node answers as primary; check parley status');
  const db = createDatabase({
    url: databaseUrl({ port: primary.port, user: 'postgres', password: secrets.superuserPassword, database: appDatabaseName }),
    poolSize: 1,
    queryTimeoutMs: 5000,
    connectTimeoutMs: 5000,
    applicationName: 'parley operator add',
  });
  try {
    const result = await db.query('UPDATE parley.accounts SET is_operator = true WHERE username = $1', [options.username]);
    if (result.rowCount === 0) {
      throw new ParleyError('not_found', `no account named "${options.username}"; create it first (POST /v1/accounts or the web client)`);
    }
  } finally {
    await db.close();
  }
}
