// `parley up`: the supervisor. It starts PostgreSQL and the app servers as separate OS processes,
// prints readiness per part, restarts a crashed child with bounded backoff, and stops everything
// (app servers first, then PostgreSQL) on Ctrl-C, SIGTERM, SIGHUP, `parley down` or an unexpected
// error. It takes no decisions about the cluster; it only starts, watches and stops.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, type Config, type ConfigInput } from '../config/config.ts';
import { appDatabaseName, appRoleName, databaseUrl, provisionDatabase } from '../data/data.ts';
import { isParleyError, ParleyError } from '../errors/errors.ts';
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

const binScript = fileURLToPath(new URL('../../bin/parley.js', import.meta.url));

interface NodeChild {
  name: string;
  port: number;
  dataDir: string;
  logFile: string;
  handle: ServerHandle | undefined;
  startedAtMs: number;
  crashes: number;
  restartTimer: NodeJS.Timeout | undefined;
  /** An in-flight restart, awaited by the stop sequence. */
  restarting: Promise<void> | undefined;
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
  if (stale) await cleanUpAfter(run, stale);
  mkdirSync(paths.logsDir, { recursive: true });

  run.bin = findPgBinaries(config.postgres.bin);
  run.account = serverAccount(config.postgres.osUser);
  if (config.cluster.nodes > 1) {
    out(`cluster.nodes is ${config.cluster.nodes}, but replication is not built yet (issue 4): starting node1 only, a primary without standbys`);
  }
  const node: NodeChild = {
    name: 'node1',
    port: config.postgres.basePort,
    dataDir: nodeDataDir(paths, 'node1'),
    logFile: join(paths.logsDir, 'node1.log'),
    handle: undefined,
    startedAtMs: 0,
    crashes: 0,
    restartTimer: undefined,
    restarting: undefined,
  };
  run.nodes.push(node);
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

  // A PostgreSQL left running by a supervisor that was killed holds the data directory and port.
  const strayPid = runningPid(node.dataDir);
  if (strayPid !== undefined) {
    out(`${node.name}: stopping a stray PostgreSQL (pid ${strayPid}) left by an earlier run`);
    await stopStrayServer(node.dataDir, postgresStopTimeoutMs);
  }
  await assertPortFree('127.0.0.1', node.port, `PostgreSQL ${node.name}`, 'set postgres.basePort (or PARLEY_POSTGRES_BASE_PORT) to a free port');
  for (const app of run.apps) {
    await assertPortFree(config.http.host, app.port, `app server ${app.index}`, 'choose another with --port (or http.port)');
  }
  throwIfStopping(run);

  const initialised = isInitialised(node.dataDir);
  const existingSecrets = readSecrets(paths);
  if (initialised && !existingSecrets) {
    throw new ParleyError(
      'config_invalid',
      `${node.dataDir} holds a database but ${paths.secretsFile} is missing, so its passwords are unknown; restore the file or move ${paths.dir} away`,
    );
  }
  run.secrets = existingSecrets ?? loadOrCreateSecrets(paths);
  // The server's account walks DIR/nodes/node1 to reach its data; umask must not hide them.
  for (const dir of [paths.nodesDir, join(paths.nodesDir, node.name)]) {
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o755);
  }
  assertReachable(node.dataDir, run.account);
  if (!initialised) {
    out(`${node.name}: creating a new PostgreSQL ${run.bin.major} data directory in ${node.dataDir}`);
    initDataDir({ bin: run.bin, dataDir: node.dataDir, account: run.account, superuserPassword: run.secrets.superuserPassword });
  }
  throwIfStopping(run);
  writeServerSettings(
    node.dataDir,
    { port: node.port, maxConnections: config.postgres.maxConnections, sharedBuffers: config.postgres.sharedBuffers },
    run.account,
  );
  await startNode(run, node, postgresReadyTimeoutMs);
  throwIfStopping(run);
  out(`${node.name}: PostgreSQL ${run.bin.major} primary ready on 127.0.0.1:${node.port}`);

  const superuserUrl = databaseUrl({ port: node.port, user: 'postgres', password: run.secrets.superuserPassword, database: 'postgres' });
  const provisioned = await bounded(
    provisionDatabase({ superuserUrl, appPassword: run.secrets.appPassword }),
    provisionTimeoutMs,
    () => new ParleyError('storage_unavailable', `provisioning database "${appDatabaseName}" on ${node.name} took over ${provisionTimeoutMs / 1000} s`),
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
}

/** Stops what a supervisor killed with -9 left behind: app servers that have not exited yet. */
async function cleanUpAfter(run: Run, stale: SupervisorState): Promise<void> {
  run.out(`found the state of a supervisor (pid ${stale.pid}) that did not stop cleanly; cleaning up after it`);
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

async function startNode(run: Run, node: NodeChild, readyTimeoutMs: number): Promise<void> {
  const handle = await startServer({
    bin: run.bin!,
    dataDir: node.dataDir,
    account: run.account,
    port: node.port,
    logFile: node.logFile,
    superuserPassword: run.secrets!.superuserPassword,
    readyTimeoutMs,
  });
  if (run.stop.signal.aborted) {
    // The stop began while this server was starting: it must not outlive the supervisor.
    await stopServer(handle, { timeoutMs: postgresStopTimeoutMs });
    return;
  }
  node.handle = handle;
  node.startedAtMs = Date.now();
  persist(run);
  void handle.exited.then(({ code, signal }) => onNodeExit(run, node, handle, code, signal));
}

function onNodeExit(run: Run, node: NodeChild, handle: ServerHandle, code: number | null, signal: NodeJS.Signals | null): void {
  if (node.handle !== handle) return;
  node.handle = undefined;
  persist(run);
  if (run.phase === 'stopping' || run.stop.signal.aborted) {
    // Printed here, not in stopAll: a Ctrl-C in a terminal reaches PostgreSQL too, which may
    // then exit on its own before the stop sequence gets to it.
    run.out(`${node.name}: PostgreSQL stopped`);
    return;
  }
  scheduleNodeRestart(run, node, Date.now() - node.startedAtMs, signal ? `signal ${signal}` : `code ${code}`);
}

function scheduleNodeRestart(run: Run, node: NodeChild, uptimeMs: number, why: string): void {
  const decision = decideRestart(node.crashes, uptimeMs);
  node.crashes = decision.crashes;
  if (decision.action === 'give-up') {
    run.out(`${node.name}: PostgreSQL failed ${decision.crashes} times in a row (${why}); giving up and stopping Parley (see ${node.logFile})`);
    requestStop(run, 1);
    return;
  }
  run.out(`${node.name}: PostgreSQL exited (${why}); restarting in ${decision.delayMs} ms (crash ${decision.crashes} in a row)`);
  node.restartTimer = setTimeout(() => {
    node.restartTimer = undefined;
    if (run.stop.signal.aborted) return;
    node.restarting = startNode(run, node, postgresReadyTimeoutMs)
      .then(() => {
        if (node.handle) run.out(`${node.name}: PostgreSQL ${run.bin!.major} primary ready again on 127.0.0.1:${node.port} (pid ${node.handle.pid})`);
      })
      .catch((error: unknown) => {
        if (run.stop.signal.aborted) return;
        scheduleNodeRestart(run, node, 0, `restart failed: ${describe(error)}`);
      })
      .finally(() => {
        node.restarting = undefined;
      });
  }, decision.delayMs);
}

function spawnApp(run: Run, app: AppChild): void {
  const { secrets, nodes, config } = run;
  const primary = nodes[0]!;
  const appUrl = databaseUrl({ port: primary.port, user: appRoleName, password: secrets!.appPassword, database: appDatabaseName });
  const args = [binScript, 'app-server', '--dir', run.paths.dir, '--port', String(app.port)];
  if (run.configFile) args.push('--config', run.configFile);
  const log = openSync(app.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, {
      env: {
        ...process.env,
        PARLEY_DATABASE_URL: appUrl,
        // The command-line overrides of `up` reach the app server through the config's own
        // environment mechanism, so it validates the same configuration as we did.
        PARLEY_CLUSTER_NODES: String(config.cluster.nodes),
        PARLEY_APP_SERVERS: String(config.app.servers),
        PARLEY_HTTP_PORT: String(config.http.port),
      },
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

/** App servers first (they hold connections to the database), then PostgreSQL; each bounded. */
async function stopAll(run: Run): Promise<void> {
  run.phase = 'stopping';
  persist(run);
  for (const part of [...run.apps, ...run.nodes]) {
    clearTimeout(part.restartTimer);
    part.restartTimer = undefined;
  }
  await Promise.all(
    run.apps.map(async (app) => {
      const { child, exited } = app;
      if (!child || !exited) return;
      await stopChild(child, exited, appStopGraceMs);
      run.out(`app server ${app.index}: stopped`);
    }),
  );
  await Promise.all(
    run.nodes.map(async (node) => {
      if (node.restarting) {
        await bounded(node.restarting, postgresReadyTimeoutMs + postgresStopTimeoutMs, () => new Error('timeout')).catch(() => undefined);
      }
      const handle = node.handle;
      if (!handle) return;
      await stopServer(handle, { timeoutMs: postgresStopTimeoutMs });
    }),
  );
}

function snapshot(run: Run): SupervisorState {
  return {
    pid: process.pid,
    startedAt: run.startedAt,
    dir: run.paths.dir,
    state: run.phase,
    nodes: run.nodes.map((node) => ({ name: node.name, port: node.port, pid: node.handle?.pid ?? null, dataDir: node.dataDir })),
    appServers: run.apps.map((app) => ({ url: app.url, port: app.port, pid: app.child?.pid ?? null })),
  };
}

function persist(run: Run): void {
  try {
    writeState(run.paths, snapshot(run));
  } catch (error) {
    // A full disk must not take the running system down; status will be stale until it clears.
    run.out(`cannot write ${run.paths.stateFile}: ${(error as Error).message}`);
  }
}
