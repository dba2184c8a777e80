// `parley up`: the supervisor. It starts PostgreSQL and the app servers as separate OS processes,
// prints readiness per part, restarts a crashed child with bounded backoff, and stops everything
// (app servers first, then PostgreSQL) on Ctrl-C, SIGTERM, SIGHUP, `parley down` or an unexpected
// error. It takes no decisions about the cluster; it only starts, watches and stops.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lintConfig, loadConfig, type Config, type ConfigInput } from '../config/config.ts';
import { appDatabaseName, appRoleName, databaseUrl, provisionDatabase } from '../data/data.ts';
import { isParleyError, ParleyError } from '../errors/errors.ts';
import { createLocalLeaseClient, generateLeaseToken, leaseKeys, startLocalLeaseServer, type LeaseStore, type LocalLeaseServer } from '../failover/failover.ts';
import { createCluster } from './cluster.ts';
import {
  findPgBinaries,
  initDataDir,
  isInitialised,
  runningPid,
  serverAccount,
  startServer,
  stopServer,
  stopStrayServer,
  writeServerSettings,
  type OsAccount,
  type PgBinaries,
  type ServerHandle,
} from '../postgres/postgres.ts';
import type { ReadyMessage } from './app-server.ts';
import { sendFallback } from '../alerting/alerting.ts';
import type { OpsReadyMessage } from './ops-process.ts';
import { assertPortFree, assertReachable, bounded, StopRequested, stopChild, waitForExit } from './processes.ts';
import { decideRestart } from './restart-core.ts';
import {
  claimStateDir,
  isAlive,
  loadOrCreateSecrets,
  nodeDataDir,
  readSecrets,
  removeState,
  statePaths,
  writeJson,
  readJson,
  writeState,
  type Secrets,
  type StatePaths,
  type SupervisorState,
} from './state.ts';

/** What `parley up` was asked for on its command line. */
export interface UpOptions {
  dir: string;
  configFile?: string;
  nodes?: number;
  appServers?: number;
  port?: number;
  /** Where progress lines go (stdout by default). */
  out?: (line: string) => void;
}

// Every wait of the supervisor has a bound; these are the ones an operator may wonder about.
const postgresReadyTimeoutMs = 60_000;
const provisionTimeoutMs = 60_000;
const appReadyTimeoutMs = 30_000;
const appStopGraceMs = 5000;
const postgresStopTimeoutMs = 15_000;
const strayAppStopMs = 5000;
const agentStopGraceMs = 20_000;
const primaryTimeoutMs = 90_000;
const leaseWatchIntervalMs = 500;

const binScript = fileURLToPath(new URL('../../bin/parley.js', import.meta.url));

interface NodeChild {
  name: string;
  port: number;
  dataDir: string;
  /** PostgreSQL's log (written by the server the agent starts). */
  logFile: string;
  /** The agent's own log. */
  agentLogFile: string;
  child: ChildProcess | undefined;
  exited: Promise<void> | undefined;
  startedAtMs: number;
  crashes: number;
  restartTimer: NodeJS.Timeout | undefined;
}

interface AppChild {
  index: number;
  port: number;
  url: string;
  logFile: string;
  child: ChildProcess | undefined;
  exited: Promise<void> | undefined;
  ready: Promise<string> | undefined;
  everReady: boolean;
  startedAtMs: number;
  crashes: number;
  restartTimer: NodeJS.Timeout | undefined;
}

interface OpsChild {
  logFile: string;
  url: string | undefined;
  child: ChildProcess | undefined;
  exited: Promise<void> | undefined;
  ready: Promise<string> | undefined;
  startedAtMs: number;
  crashes: number;
  restartTimer: NodeJS.Timeout | undefined;
  watchTimer: NodeJS.Timeout | undefined;
  /** Since when the ops process has been silent (no answer, or alerting not ticking), or null. */
  silentSinceMs: number | null;
  /** The fallback alert went out for the current silence. */
  fallbackSent: boolean;
}

interface Run {
  paths: StatePaths;
  config: Config;
  configFile: string | undefined;
  out: (line: string) => void;
  startedAt: string;
  phase: 'starting' | 'up' | 'stopping';
  bin: PgBinaries | undefined;
  account: OsAccount | undefined;
  secrets: Secrets | undefined;
  nodes: NodeChild[];
  apps: AppChild[];
  ops: OpsChild | undefined;
  lease: LocalLeaseServer | undefined;
  leaseClient: LeaseStore | undefined;
  leaseTimer: NodeJS.Timeout | undefined;
  /** Aborted when a stop is requested; startup waits give up on it. */
  stop: AbortController;
  exitCode: number;
}

/** Runs the whole system in the foreground until stopped; resolves with the exit code. */
export async function runUp(options: UpOptions): Promise<number> {
  const out = options.out ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const overrides: ConfigInput = {};
  if (options.nodes !== undefined) overrides.cluster = { nodes: options.nodes };
  if (options.appServers !== undefined) overrides.app = { servers: options.appServers };
  if (options.port !== undefined) overrides.http = { port: options.port };
  // Configuration errors are reported before DIR is touched.
  const config = loadConfig({ file: options.configFile, env: process.env, overrides });
  const paths = statePaths(options.dir);
  const run: Run = {
    paths,
    config,
    configFile: options.configFile,
    out,
    startedAt: new Date().toISOString(),
    phase: 'starting',
    bin: undefined,
    account: undefined,
    secrets: undefined,
    nodes: [],
    apps: [],
    ops: undefined,
    lease: undefined,
    leaseClient: undefined,
    leaseTimer: undefined,
    stop: new AbortController(),
    exitCode: 0,
  };
  const { stale } = claimStateDir(paths, snapshot(run));

  const onSignal = (signal: NodeJS.Signals): void => {
    if (run.stop.signal.aborted) {
      out(`${signal}: already stopping (every step has a time bound)`);
      return;
    }
    out(`${signal}: stopping Parley`);
    requestStop(run, 0);
  };
  const onFatal = (error: unknown): void => {
    process.stderr.write(`parley: unexpected error, stopping everything: ${describe(error)}\n`);
    requestStop(run, 1);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const signal of signals) process.on(signal, onSignal);
  process.on('uncaughtException', onFatal);
  process.on('unhandledRejection', onFatal);
  // A closed terminal (SIGHUP) turns writes to stdout into EIO/EPIPE; that must not crash the stop.
  const ignore = (): void => undefined;
  process.stdout.on('error', ignore);

  let startError: unknown;
  try {
    await start(run, stale);
    if (!run.stop.signal.aborted) {
      run.phase = 'up';
      persist(run);
      out(`Parley is up: ${run.apps[0]?.url ?? '(no app server)'} (parley down or Ctrl-C to stop)`);
      await new Promise<void>((resolve) => run.stop.signal.addEventListener('abort', () => resolve(), { once: true }));
    }
  } catch (error) {
    if (!(error instanceof StopRequested)) startError = error;
  }
  try {
    await stopAll(run);
  } finally {
    removeState(paths);
    for (const signal of signals) process.off(signal, onSignal);
    process.off('uncaughtException', onFatal);
    process.off('unhandledRejection', onFatal);
    process.stdout.off('error', ignore);
  }
  if (startError !== undefined) throw startError;
  out(run.exitCode === 0 ? 'Parley stopped.' : 'Parley stopped after an error.');
  return run.exitCode;
}

function requestStop(run: Run, exitCode: number): void {
  if (run.stop.signal.aborted) return;
  run.exitCode = exitCode;
  run.stop.abort();
}

function describe(error: unknown): string {
  if (isParleyError(error)) return error.message;
  if (error instanceof Error) return `${error.message}${error.stack ? ` (${error.stack.split('\n')[1]?.trim() ?? ''})` : ''}`;
  return String(error);
}

function throwIfStopping(run: Run): void {
  if (run.stop.signal.aborted) throw new StopRequested();
}

/** Everything from an empty (or existing) DIR to serving app servers. */
async function start(run: Run, stale: SupervisorState | undefined): Promise<void> {
  const { config, paths, out } = run;
  out(`Parley: starting in ${paths.dir} (config: ${run.configFile ?? 'defaults'} + PARLEY_* environment)`);
  for (const finding of lintConfig(config)) out(`config warning: ${finding.key}: ${finding.message}`);
  if (stale) await cleanUpAfter(run, stale);
  mkdirSync(paths.logsDir, { recursive: true });

  run.bin = findPgBinaries(config.postgres.bin);
  run.account = serverAccount(config.postgres.osUser);
  for (let i = 0; i < config.cluster.nodes; i++) {
    const name = `node${i + 1}`;
    run.nodes.push({
      name,
      port: config.postgres.basePort + i,
      dataDir: nodeDataDir(paths, name),
      logFile: join(paths.logsDir, `${name}.log`),
      agentLogFile: join(paths.logsDir, `${name}-agent.log`),
      child: undefined,
      exited: undefined,
      startedAtMs: 0,
      crashes: 0,
      restartTimer: undefined,
    });
  }
  for (let i = 0; i < config.app.servers; i++) {
    const port = config.http.port + i;
    run.apps.push({
      index: i + 1,
      port,
      url: `http://${config.http.host}:${port}`,
      logFile: join(paths.logsDir, `app-${port}.log`),
      child: undefined,
      exited: undefined,
      ready: undefined,
      everReady: false,
      startedAtMs: 0,
      crashes: 0,
      restartTimer: undefined,
    });
  }

  // A PostgreSQL left running by an agent that was killed holds the data directory and port.
  for (const node of run.nodes) {
    const strayPid = runningPid(node.dataDir);
    if (strayPid !== undefined) {
      out(`${node.name}: stopping a stray PostgreSQL (pid ${strayPid}) left by an earlier run`);
      await stopStrayServer(node.dataDir, postgresStopTimeoutMs);
    }
    await assertPortFree('127.0.0.1', node.port, `PostgreSQL ${node.name}`, 'set postgres.basePort (or PARLEY_POSTGRES_BASE_PORT) to a free port');
  }
  for (const app of run.apps) {
    await assertPortFree(config.http.host, app.port, `app server ${app.index}`, 'choose another with --port (or http.port)');
  }
  throwIfStopping(run);

  const initialised = run.nodes.map((node) => isInitialised(node.dataDir));
  const existingSecrets = readSecrets(paths);
  if (initialised.some(Boolean) && !existingSecrets) {
    throw new ParleyError(
      'config_invalid',
      `${run.nodes[0]!.dataDir} holds a database but ${paths.secretsFile} is missing, so its passwords are unknown; restore the file or move ${paths.dir} away`,
    );
  }
  run.secrets = existingSecrets ?? loadOrCreateSecrets(paths);
  // The server's account walks DIR/nodes/NAME to reach its data; umask must not hide them.
  for (const node of run.nodes) {
    for (const dir of [paths.nodesDir, join(paths.nodesDir, node.name)]) {
      mkdirSync(dir, { recursive: true });
      chmodSync(dir, 0o755);
    }
    assertReachable(node.dataDir, run.account);
  }
  const settings = { maxConnections: config.postgres.maxConnections, sharedBuffers: config.postgres.sharedBuffers };
  if (!initialised.some(Boolean)) {
    rmSync(paths.leaseRecordFile, { force: true });
    await createCluster({ nodes: run.nodes, bin: run.bin, account: run.account, secrets: run.secrets, settings, out });
    // node1 held the first lease: its agent takes it back as the last holder.
    writeJson(paths.leaseRecordFile, { holder: run.nodes[0]!.name, acquiredAtMs: Date.now(), expiresAtMs: Date.now(), released: false, rolledBack: false });
  } else if (!initialised.every(Boolean)) {
    const have = run.nodes.filter((_, i) => initialised[i]).length;
    throw new ParleyError(
      'config_invalid',
      `${paths.dir} holds a cluster of ${have} node(s) but ${config.cluster.nodes} were asked for; growing a cluster is not supported yet: run with --nodes ${have}`,
    );
  }
  throwIfStopping(run);

  writeJson(paths.clusterFile, { members: run.nodes.map((n) => ({ name: n.name, port: n.port, dataDir: n.dataDir })) });
  const token = generateLeaseToken();
  // A restarted store answers "held" for one TTL, so no agent takes over while the others re-read it.
  run.lease = await startLocalLeaseServer({ host: '127.0.0.1', port: 0, token, holdCreatesMs: 0 });
  writeJson(paths.leaseFile, { url: run.lease.url, token }, 0o600);
  run.leaseClient = createLocalLeaseClient({ url: run.lease.url, token, timeoutMs: 2000 });
  if (existsSync(paths.leaseRecordFile)) {
    const record = readJson<Record<string, unknown>>(paths.leaseRecordFile, 'the last lease record');
    await run.leaseClient.put(leaseKeys.leader, JSON.stringify(record), {});
    out(`lease store: ready on ${run.lease.url}; the lease was last held by ${String(record.holder)}`);
  } else {
    out(`lease store: ready on ${run.lease.url}`);
  }
  watchLease(run);

  for (const node of run.nodes) spawnAgent(run, node);
  persist(run);
  const primary = await bounded(
    waitForPrimary(run),
    primaryTimeoutMs,
    () => new ParleyError('storage_unavailable', `no primary was elected within ${primaryTimeoutMs / 1000} s; see ${join(paths.logsDir, 'node*-agent.log')} and ${paths.journalFile}`),
    run.stop.signal,
  );
  const primaryNode = run.nodes.find((n) => n.name === primary)!;
  out(`${primary}: PostgreSQL ${run.bin.major} primary ready on 127.0.0.1:${primaryNode.port}${run.nodes.length > 1 ? ` (standbys: ${run.nodes.filter((n) => n !== primaryNode).map((n) => n.name).join(', ')})` : ''}`);

  const superuserUrl = databaseUrl({ port: primaryNode.port, user: 'postgres', password: run.secrets.superuserPassword, database: 'postgres' });
  const provisioned = await bounded(
    provisionDatabase({ superuserUrl, appPassword: run.secrets.appPassword }),
    provisionTimeoutMs,
    () => new ParleyError('storage_unavailable', `provisioning database "${appDatabaseName}" on ${primary} took over ${provisionTimeoutMs / 1000} s`),
    run.stop.signal,
  );
  out(
    `database: "${appDatabaseName}" ready for role ${appRoleName} (${provisioned.applied.length > 0 ? `applied migrations ${provisioned.applied.join(', ')}` : 'schema up to date'})`,
  );

  for (const app of run.apps) {
    spawnApp(run, app);
    persist(run);
    const url = await bounded(
      app.ready!,
      appReadyTimeoutMs,
      () => new ParleyError('internal', `app server ${app.index} did not report ready within ${appReadyTimeoutMs / 1000} s; see ${app.logFile}`),
      run.stop.signal,
    );
    out(`app server ${app.index}: ready at ${url}`);
  }

  // The ops process: sampling, alert rules, paging. Started last, so it samples a running system.
  run.ops = {
    logFile: join(paths.logsDir, 'ops.log'),
    url: undefined,
    child: undefined,
    exited: undefined,
    ready: undefined,
    startedAtMs: 0,
    crashes: 0,
    restartTimer: undefined,
    watchTimer: undefined,
    silentSinceMs: null,
    fallbackSent: false,
  };
  spawnOps(run, run.ops);
  const opsUrl = await bounded(
    run.ops.ready!,
    appReadyTimeoutMs,
    () => new ParleyError('internal', `the ops process did not report ready within ${appReadyTimeoutMs / 1000} s; see ${run.ops?.logFile}`),
    run.stop.signal,
  );
  out(`ops: sampling every ${config.ops.sampleIntervalMs} ms; /metrics and the ops API at ${opsUrl}${config.alerting.channels.length > 0 ? `; paging through ${config.alerting.channels.map((c) => c.name).join(', ')}` : '; no alerting channel configured (parley alerts lists alerts)'}`);
  watchOps(run, run.ops);
}

function spawnOps(run: Run, ops: OpsChild): void {
  const args = [binScript, 'ops', '--dir', run.paths.dir];
  if (run.configFile) args.push('--config', run.configFile);
  const log = openSync(ops.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, { env: { ...process.env, ...overrideEnv(run) }, stdio: ['ignore', log, log, 'ipc'], detached: true });
  } finally {
    closeSync(log);
  }
  ops.child = child;
  ops.startedAtMs = Date.now();
  ops.exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  ops.ready = new Promise<string>((resolve, reject) => {
    child.on('message', (message: Partial<OpsReadyMessage>) => {
      if (message?.type !== 'ops-ready' || typeof message.url !== 'string') return;
      const again = ops.url !== undefined;
      ops.url = message.url;
      resolve(message.url);
      persist(run);
      if (again && run.phase === 'up') run.out(`ops: ready again at ${message.url} (pid ${child.pid})`);
    });
    child.once('exit', (code, signal) => reject(new ParleyError('internal', `the ops process exited (${signal ? `signal ${signal}` : `code ${code}`}) before it was ready: ${logTail(ops.logFile)}`)));
  });
  ops.ready.catch(() => undefined);
  child.on('error', (error) => run.out(`ops: ${error.message}`));
  child.once('exit', (code, signal) => {
    if (ops.child !== child) return;
    ops.child = undefined;
    persist(run);
    if (run.phase === 'stopping' || run.stop.signal.aborted) return;
    const why = signal ? `signal ${signal}` : `code ${code}`;
    const decision = decideRestart(ops.crashes, Date.now() - ops.startedAtMs);
    ops.crashes = decision.crashes;
    if (decision.action === 'give-up') {
      // Parley keeps serving messages; the watch below raises the fallback alert.
      run.out(`ops: exited ${decision.crashes} times in a row (${why}); giving up on it (see ${ops.logFile})`);
      return;
    }
    run.out(`ops: exited (${why}); restarting in ${decision.delayMs} ms (crash ${decision.crashes} in a row)`);
    ops.restartTimer = setTimeout(() => {
      ops.restartTimer = undefined;
      if (!run.stop.signal.aborted) spawnOps(run, ops);
      persist(run);
    }, decision.delayMs);
  });
}

/**
 * The second process of issue 8 point 6: the supervisor asks the ops process every second whether
 * it runs alerting. Silent for `ops.silentAfterMs` (no answer — killed, frozen, hung — or an answer
 * whose last alerting tick is that old) → a critical alert straight through every configured
 * channel; answering again → its resolution. Journaled either way.
 */
function watchOps(run: Run, ops: OpsChild): void {
  const { silentAfterMs } = run.config.ops;
  const check = async (): Promise<void> => {
    const now = Date.now();
    let alive = false;
    if (ops.url) {
      try {
        const response = await fetch(`${ops.url}/healthz`, { signal: AbortSignal.timeout(2000) });
        const body = (await response.json()) as { lastAlertingTickAt?: string | null };
        const tick = body.lastAlertingTickAt ? Date.parse(body.lastAlertingTickAt) : ops.startedAtMs;
        alive = response.ok && now - tick < silentAfterMs;
      } catch {
        alive = false;
      }
    }
    if (alive) {
      if (ops.fallbackSent) void fallback(run, 'resolved', now);
      ops.silentSinceMs = null;
      ops.fallbackSent = false;
    } else {
      ops.silentSinceMs ??= now;
      if (!ops.fallbackSent && now - ops.silentSinceMs >= silentAfterMs) {
        ops.fallbackSent = true;
        void fallback(run, 'firing', ops.silentSinceMs);
      }
    }
    if (!run.stop.signal.aborted && run.phase !== 'stopping') ops.watchTimer = setTimeout(() => void check(), 1000);
  };
  ops.watchTimer = setTimeout(() => void check(), 1000);
}

async function fallback(run: Run, status: 'firing' | 'resolved', sinceMs: number): Promise<void> {
  const { alerting } = run.config;
  const summary =
    status === 'firing'
      ? `the ops process (monitoring and alerting) has been silent since ${new Date(sinceMs).toISOString()}: no alert can reach anyone until it is back; see ${run.ops?.logFile}`
      : 'the ops process answers again; monitoring and alerting are back';
  run.out(`ops: ${status === 'firing' ? 'silent' : 'back'}: ${summary}`);
  const journal = (entry: Record<string, unknown>): void => {
    try {
      appendFileSync(run.paths.journalFile, `${JSON.stringify({ at: new Date().toISOString(), kind: 'supervisor', ...entry })}
`);
    } catch {
      // the journal is a record, not a gate
    }
  };
  journal({ event: `fallback alert ${status}`, name: 'AlertingSilent', summary });
  if (alerting.channels.length === 0) return;
  const results = await sendFallback(
    alerting,
    {
      id: `AlertingSilent-${sinceMs}`,
      name: 'AlertingSilent',
      severity: 'critical',
      node: 'ops',
      summary,
      startsAt: new Date(sinceMs).toISOString(),
      ...(status === 'resolved' ? { endsAt: new Date().toISOString() } : {}),
      status,
      labels: { source: 'supervisor' },
    },
    { journal: (attempt) => journal({ event: 'fallback delivery attempt', ...attempt }) },
  ).catch((error: unknown) => [{ channel: '*', ok: false, attempts: 0, error: (error as Error).message }]);
  for (const result of results) {
    run.out(`ops: fallback alert ${status} via ${result.channel}: ${result.ok ? 'delivered' : `failed after ${result.attempts} attempt(s): ${result.error ?? ''}`}`);
  }
}

/** The holder of a running term whose agent publishes it as a running primary. */
async function currentPrimary(run: Run): Promise<string | undefined> {
  const store = run.leaseClient!;
  const entry = await store.get(leaseKeys.leader);
  if (!entry) return undefined;
  const record = JSON.parse(entry.value) as { holder: string; expiresAtMs: number; released: boolean };
  if (record.released || record.expiresAtMs <= Date.now()) return undefined;
  const member = await store.get(`${leaseKeys.memberPrefix}${record.holder}`);
  if (!member) return undefined;
  const state = JSON.parse(member.value) as { running: boolean; role: string };
  return state.running && state.role === 'primary' ? record.holder : undefined;
}

async function waitForPrimary(run: Run): Promise<string> {
  for (;;) {
    throwIfStopping(run);
    const primary = await currentPrimary(run).catch(() => undefined);
    if (primary) return primary;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Keeps DIR/lease-record.json equal to the leader record, so a restarted store knows the last holder. */
function watchLease(run: Run): void {
  let last = '';
  const tick = async (): Promise<void> => {
    // Agents restart PostgreSQL on their own: keep supervisor.json's pids current for status and down.
    persist(run);
    try {
      const entry = await run.leaseClient!.get(leaseKeys.leader);
      if (entry && entry.value !== last) {
        writeJson(run.paths.leaseRecordFile, JSON.parse(entry.value));
        last = entry.value;
      }
    } catch {
      // The store is in this process; an error here is transient.
    }
    if (!run.stop.signal.aborted) run.leaseTimer = setTimeout(() => void tick(), leaseWatchIntervalMs);
  };
  void tick();
}

/** Stops what a supervisor killed with -9 left behind: app servers that have not exited yet. */
async function cleanUpAfter(run: Run, stale: SupervisorState): Promise<void> {
  run.out(`found the state of a supervisor (pid ${stale.pid}) that did not stop cleanly; cleaning up after it`);
  const strayOps = stale.ops?.pid ?? null;
  if (strayOps !== null && isAlive(strayOps) && commandLineIncludes(strayOps, 'ops')) {
    run.out(`stopping a stray ops process (pid ${strayOps})`);
    try {
      process.kill(strayOps, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  for (const app of stale.appServers) {
    if (app.pid === null || !isAlive(app.pid) || !commandLineIncludes(app.pid, 'app-server')) continue;
    run.out(`stopping a stray app server (pid ${app.pid}) on port ${app.port}`);
    try {
      process.kill(app.pid, 'SIGTERM');
    } catch {
      continue;
    }
    if (!(await waitForExit(app.pid, strayAppStopMs))) {
      try {
        process.kill(app.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}

function commandLineIncludes(pid: number, word: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(word);
  } catch {
    return false;
  }
}

function spawnAgent(run: Run, node: NodeChild): void {
  const args = [binScript, 'agent', '--node', node.name, '--dir', run.paths.dir];
  if (run.configFile) args.push('--config', run.configFile);
  const log = openSync(node.agentLogFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, {
      env: { ...process.env, ...overrideEnv(run) },
      stdio: ['ignore', log, log, 'ipc'],
      detached: true,
    });
  } finally {
    closeSync(log);
  }
  node.child = child;
  node.startedAtMs = Date.now();
  node.exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.on('error', (error) => run.out(`${node.name} agent: ${error.message}`));
  child.once('exit', (code, signal) => void onAgentExit(run, node, child, code, signal));
}

async function onAgentExit(run: Run, node: NodeChild, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
  if (node.child !== child) return;
  node.child = undefined;
  persist(run);
  if (run.phase === 'stopping' || run.stop.signal.aborted) return;
  const why = signal ? `signal ${signal}` : `code ${code}`;
  // Proven death (DESIGN.md "faster than a lease's TTL"): the agent exited and its PostgreSQL is
  // gone too, so the node cannot take writes; end its term now instead of waiting for expiry.
  // Fencing first: while its PostgreSQL runs, the term is left to expire.
  if (runningPid(node.dataDir) === undefined) await releaseOnBehalf(run, node);
  const decision = decideRestart(node.crashes, Date.now() - node.startedAtMs);
  node.crashes = decision.crashes;
  if (decision.action === 'give-up') {
    run.out(`${node.name} agent: exited ${decision.crashes} times in a row (${why}); giving up on it (see ${node.agentLogFile})`);
    return;
  }
  run.out(`${node.name} agent: exited (${why}); restarting in ${decision.delayMs} ms (crash ${decision.crashes} in a row)`);
  node.restartTimer = setTimeout(() => {
    node.restartTimer = undefined;
    if (!run.stop.signal.aborted) spawnAgent(run, node);
    persist(run);
  }, decision.delayMs);
}

async function releaseOnBehalf(run: Run, node: NodeChild): Promise<void> {
  try {
    const entry = await run.leaseClient!.get(leaseKeys.leader);
    if (!entry) return;
    const record = JSON.parse(entry.value) as { holder: string; released: boolean; expiresAtMs: number };
    if (record.holder !== node.name || record.released || record.expiresAtMs <= Date.now()) return;
    const released = { ...record, released: true, expiresAtMs: Date.now() };
    if (await run.leaseClient!.update(leaseKeys.leader, JSON.stringify(released), entry.revision, {})) {
      run.out(`${node.name}: its agent and PostgreSQL are both gone; released its lease so a standby can take over now`);
      appendFileSync(run.paths.journalFile, `${JSON.stringify({ at: new Date().toISOString(), node: node.name, kind: 'supervisor', event: 'released lease after proven death' })}\n`);
    }
  } catch (error) {
    run.out(`${node.name}: could not release its lease (${describe(error)}); it will expire`);
  }
}

/** The command-line overrides of `up`, passed to children as PARLEY_* so they validate the same config. */
function overrideEnv(run: Run): Record<string, string> {
  return {
    PARLEY_CLUSTER_NODES: String(run.config.cluster.nodes),
    PARLEY_APP_SERVERS: String(run.config.app.servers),
    PARLEY_HTTP_PORT: String(run.config.http.port),
  };
}

function spawnApp(run: Run, app: AppChild): void {
  const args = [binScript, 'app-server', '--dir', run.paths.dir, '--port', String(app.port)];
  if (run.configFile) args.push('--config', run.configFile);
  const log = openSync(app.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, {
      // It finds the primary through the lease store (DIR/lease.json), never by guessing.
      env: { ...process.env, PARLEY_DATABASE_URL: '', ...overrideEnv(run) },
      stdio: ['ignore', log, log, 'ipc'],
      // Its own process group: a Ctrl-C in the terminal reaches only the supervisor, which then
      // stops the parts in order.
      detached: true,
    });
  } finally {
    closeSync(log);
  }
  app.child = child;
  app.startedAtMs = Date.now();
  app.exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  app.ready = new Promise<string>((resolve, reject) => {
    child.on('message', (message: Partial<ReadyMessage>) => {
      if (message?.type !== 'ready' || typeof message.url !== 'string') return;
      resolve(message.url);
      const again = app.everReady;
      app.everReady = true;
      persist(run);
      if (again && run.phase === 'up') run.out(`app server ${app.index}: ready again at ${message.url} (pid ${child.pid})`);
    });
    child.once('exit', (code, signal) => {
      reject(new ParleyError('internal', `app server ${app.index} exited (${signal ? `signal ${signal}` : `code ${code}`}) before it was ready: ${logTail(app.logFile)}`));
    });
  });
  // Startup awaits `ready` itself; a rejection nobody awaits (a restart) must not count as unhandled.
  app.ready.catch(() => undefined);
  child.on('error', (error) => run.out(`app server ${app.index}: ${error.message}`));
  child.once('exit', (code, signal) => onAppExit(run, app, child, code, signal));
}

function onAppExit(run: Run, app: AppChild, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
  if (app.child !== child) return;
  app.child = undefined;
  persist(run);
  // Before its first ready, startup reports the failure; while stopping, an exit is expected.
  if (!app.everReady || run.phase === 'stopping' || run.stop.signal.aborted) return;
  const why = signal ? `signal ${signal}` : `code ${code}`;
  const decision = decideRestart(app.crashes, Date.now() - app.startedAtMs);
  app.crashes = decision.crashes;
  if (decision.action === 'give-up') {
    run.out(`app server ${app.index}: exited ${decision.crashes} times in a row (${why}); giving up and stopping Parley (see ${app.logFile})`);
    requestStop(run, 1);
    return;
  }
  run.out(`app server ${app.index}: exited (${why}); restarting in ${decision.delayMs} ms (crash ${decision.crashes} in a row)`);
  app.restartTimer = setTimeout(() => {
    app.restartTimer = undefined;
    if (!run.stop.signal.aborted) spawnApp(run, app);
    persist(run);
  }, decision.delayMs);
}

function logTail(file: string): string {
  if (!existsSync(file)) return `no log at ${file}`;
  const lines = readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ');
  return `${lines || '(empty log)'} (${file})`;
}

/**
 * App servers first (they hold connections to the database), then the standbys' agents, then the
 * primary's (so no standby sees the lease lapse and takes over during a planned stop), then the
 * lease store. Each agent stops its own PostgreSQL; every step is bounded.
 */
async function stopAll(run: Run): Promise<void> {
  run.phase = 'stopping';
  persist(run);
  clearTimeout(run.leaseTimer);
  for (const part of [...run.apps, ...run.nodes, ...(run.ops ? [run.ops] : [])]) {
    clearTimeout(part.restartTimer);
    part.restartTimer = undefined;
  }
  // The ops process first: a planned stop must not page anyone.
  if (run.ops) {
    clearTimeout(run.ops.watchTimer);
    const { child, exited } = run.ops;
    if (child && exited) {
      await stopChild(child, exited, appStopGraceMs);
      run.out('ops: stopped');
    }
    rmSync(run.paths.opsFile, { force: true });
  }
  await Promise.all(
    run.apps.map(async (app) => {
      const { child, exited } = app;
      if (!child || !exited) return;
      await stopChild(child, exited, appStopGraceMs);
      run.out(`app server ${app.index}: stopped`);
    }),
  );
  const primary = run.leaseClient ? await currentPrimary(run).catch(() => undefined) : undefined;
  const stopAgent = async (node: NodeChild): Promise<void> => {
    const { child, exited } = node;
    if (child && exited) await stopChild(child, exited, agentStopGraceMs);
    // An agent killed before it could stop its PostgreSQL leaves the server running: stop it here.
    if (runningPid(node.dataDir) !== undefined) await stopStrayServer(node.dataDir, postgresStopTimeoutMs);
    run.out(`${node.name}: stopped`);
  };
  await Promise.all(run.nodes.filter((n) => n.name !== primary).map(stopAgent));
  await Promise.all(run.nodes.filter((n) => n.name === primary).map(stopAgent));
  if (run.leaseClient) {
    const entry = await run.leaseClient.get(leaseKeys.leader).catch(() => undefined);
    if (entry) writeJson(run.paths.leaseRecordFile, JSON.parse(entry.value));
    await run.leaseClient.close().catch(() => undefined);
  }
  await run.lease?.close().catch(() => undefined);
}

function snapshot(run: Run): SupervisorState {
  return {
    pid: process.pid,
    startedAt: run.startedAt,
    dir: run.paths.dir,
    state: run.phase,
    nodes: run.nodes.map((node) => ({ name: node.name, port: node.port, pid: runningPid(node.dataDir) ?? null, agentPid: node.child?.pid ?? null, dataDir: node.dataDir })),
    appServers: run.apps.map((app) => ({ url: app.url, port: app.port, pid: app.child?.pid ?? null })),
    ops: run.ops ? { pid: run.ops.child?.pid ?? null, url: run.ops.url ?? null } : undefined,
  };
}

let lastPersisted = '';

function persist(run: Run): void {
  try {
    const state = snapshot(run);
    const text = JSON.stringify(state);
    if (text === lastPersisted) return;
    lastPersisted = text;
    writeState(run.paths, state);
  } catch (error) {
    // A full disk must not take the running system down; status will be stale until it clears.
    run.out(`cannot write ${run.paths.stateFile}: ${(error as Error).message}`);
  }
}
