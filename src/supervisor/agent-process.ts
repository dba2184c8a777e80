// The `parley agent --node NAME` process that `parley up` starts, one per PostgreSQL node. It
// reads the cluster's layout, secrets and lease store address from DIR and runs the agent loop
// until SIGTERM/SIGINT or until its supervisor's IPC channel closes (then it stops its PostgreSQL).
import { join } from 'node:path';
import { loadConfig } from '../config/config.ts';
import { ParleyError } from '../errors/errors.ts';
import { createLocalLeaseClient, runAgent } from '../failover/failover.ts';
import { findPgBinaries, serverAccount } from '../postgres/postgres.ts';
import { readJson, readSecrets, statePaths, type ClusterFile, type LeaseFile } from './state.ts';

/** Builds decide()'s configuration from `cluster` settings and the member list. */
export function decideConfigOf(config: ReturnType<typeof loadConfig>, members: readonly string[]) {
  return {
    members,
    // ANY 1 of the others: an acknowledged write is on the primary and one standby (invariant 1).
    synchronousQuorum: members.length > 1 ? 1 : 0,
    leaseTtlMs: config.cluster.leaseTtlMs,
    loopIntervalMs: config.cluster.loopIntervalMs,
    failoverDeadlineMs: config.cluster.failoverDeadlineMs,
    maximumLagOnFailoverBytes: config.cluster.maximumLagOnFailoverBytes,
    primaryStartTimeoutMs: config.cluster.primaryStartTimeoutMs,
  };
}

/** Runs one node's agent in this process. */
export async function runAgentProcess(options: { dir: string; node: string; configFile?: string }): Promise<void> {
  const paths = statePaths(options.dir);
  const config = loadConfig({ file: options.configFile, env: process.env });
  const cluster = readJson<ClusterFile>(paths.clusterFile, 'the cluster layout');
  const lease = readJson<LeaseFile>(paths.leaseFile, 'the lease store address');
  const secrets = readSecrets(paths);
  if (!secrets) throw new ParleyError('not_found', `${paths.secretsFile} is missing`);
  if (!cluster.members.some((m) => m.name === options.node)) {
    throw new ParleyError('cli_usage', `no node "${options.node}" in ${paths.clusterFile} (members: ${cluster.members.map((m) => m.name).join(', ')})`);
  }
  const stop = new AbortController();
  const quit = (why: string): void => {
    if (stop.signal.aborted) return;
    console.log(`${options.node} agent: stopping (${why})`);
    stop.abort();
  };
  process.on('SIGTERM', () => quit('SIGTERM'));
  process.on('SIGINT', () => quit('SIGINT'));
  if (process.send) {
    process.on('disconnect', () => quit('supervisor gone'));
    if (!process.connected) quit('supervisor gone');
  }
  const store = createLocalLeaseClient({ url: lease.url, token: lease.token, timeoutMs: Math.max(500, Math.floor(config.cluster.loopIntervalMs)) });
  try {
    await runAgent({
      name: options.node,
      members: cluster.members,
      store,
      decideConfig: decideConfigOf(config, cluster.members.map((m) => m.name)),
      bin: findPgBinaries(config.postgres.bin),
      account: serverAccount(config.postgres.osUser),
      superuserPassword: secrets.superuserPassword,
      replicationPassword: secrets.replicationPassword,
      settings: { maxConnections: config.postgres.maxConnections, sharedBuffers: config.postgres.sharedBuffers },
      logFile: join(paths.logsDir, `${options.node}.log`),
      journalFile: paths.journalFile,
      log: (line) => console.log(`${new Date().toISOString()} ${options.node}: ${line}`),
      signal: stop.signal,
    });
  } finally {
    await store.close();
  }
}
