// The `parley ops` process that `parley up` starts: monitor → alerting (src/ops/). It reads the
// cluster's layout, secrets and lease store address from DIR, starts sampling and the ops API, and
// writes DIR/ops.json (URL, token, pid; mode 0600) for `parley alerts` and the app servers. It runs
// until SIGTERM/SIGINT or until its supervisor's IPC channel closes.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { loadConfig } from '../config/config.ts';
import { databaseUrl } from '../data/data.ts';
import { ParleyError } from '../errors/errors.ts';
import { createLocalLeaseClient } from '../failover/failover.ts';
import { startOps } from '../ops/ops.ts';
import { readJson, readSecrets, statePaths, writeJson, type ClusterFile, type LeaseFile, type OpsFile } from './state.ts';

/** The message the ops process sends its supervisor once its API listens. */
export interface OpsReadyMessage {
  type: 'ops-ready';
  url: string;
}

const closeTimeoutMs = 5000;

export async function runOpsProcess(options: { dir: string; configFile?: string }): Promise<void> {
  const paths = statePaths(options.dir);
  const config = loadConfig({ file: options.configFile, env: process.env });
  const cluster = readJson<ClusterFile>(paths.clusterFile, 'the cluster layout');
  const lease = readJson<LeaseFile>(paths.leaseFile, 'the lease store address');
  const secrets = readSecrets(paths);
  if (!secrets) throw new ParleyError('not_found', `${paths.secretsFile} is missing`);
  const store = createLocalLeaseClient({ url: lease.url, token: lease.token, timeoutMs: 800 });
  const token = randomBytes(24).toString('base64url');
  const log = (line: string): void => console.log(`${new Date().toISOString()} ${line}`);

  const ops = await startOps({
    nodes: cluster.members.map((m) => ({
      name: m.name,
      url: databaseUrl({ port: m.port, user: 'postgres', password: secrets.superuserPassword, database: 'postgres' }),
      dataDir: m.dataDir,
    })),
    appServers: Array.from({ length: config.app.servers }, (_, i) => {
      const port = config.http.port + i;
      return { name: `app-${port}`, url: `http://${config.http.host}:${port}` };
    }),
    lease: store,
    alerting: config.alerting,
    cluster: config.cluster,
    stateDir: paths.opsDir,
    journalFile: paths.journalFile,
    host: config.ops.host,
    port: config.ops.port,
    token,
    rulesFile: config.ops.rulesFile === '' ? undefined : config.ops.rulesFile,
    sampleIntervalMs: config.ops.sampleIntervalMs,
    log,
  });
  writeJson(paths.opsFile, { url: ops.url, token, pid: process.pid } satisfies OpsFile, 0o600);

  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log(`ops: stopping (${why})`);
    const timer = setTimeout(() => process.exit(1), closeTimeoutMs);
    timer.unref();
    void ops
      .close()
      .then(() => store.close())
      .catch(() => undefined)
      .finally(() => {
        rmSync(paths.opsFile, { force: true });
        process.exit(0);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (process.send) {
    process.on('disconnect', () => stop('supervisor gone'));
    if (!process.connected) stop('supervisor gone');
  }
  const ready: OpsReadyMessage = { type: 'ops-ready', url: ops.url };
  process.send?.(ready);
}
