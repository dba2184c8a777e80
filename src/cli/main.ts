// The `parley` command. Thin: it parses the command line, calls the parts, and maps every failure
// once to one line `parley: <reason>` on stderr and a non-zero exit (1 for a failure, 2 for bad
// usage). Commands appear here only once they are implemented.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { checkAlertingConfig } from '../alerting/alerting.ts';
import { lintConfig, loadConfig, type Config } from '../config/config.ts';
import { isParleyError, ParleyError } from '../errors/errors.ts';
import { formatDrillReport, runDrill, scenarios } from '../drills/drills.ts';
import { findIncident, formatIncident, formatIncidents, readIncidents, renderPostmortem } from '../incidents/incidents.ts';
import {
  ackAlert,
  addOperator,
  formatAlerts,
  formatStatus,
  readAlerts,
  runOpsProcess,
  readStatus,
  runAgentProcess,
  runAppServer,
  runMaintenance,
  runManualFailover,
  runSwitchover,
  runUp,
  startMaintenance,
  stopMaintenance,
  stopRunning,
  statePaths,
} from '../supervisor/supervisor.ts';

/** Exit code for a command that failed. */
export const exitFailure = 1;
/** Exit code for a command line that could not be understood. */
export const exitUsage = 2;

// A short command must not hang on a forgotten handle; long-running ones (up, app-server) end
// through their own stop paths.
const exitGuardMs = 3000;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function complain(line: string): void {
  process.stderr.write(`parley: ${line.replace(/\s*\n\s*/g, ' ').trim()}\n`);
}

function integer(label: string): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`${label} must be a whole number`);
    return Number(value);
  };
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Throws `config_invalid` with one line per problem, naming the key, when a critical alert would
 * reach fewer than two independent channels or an alerting name points nowhere (issue 8 point 2).
 * No channel at all passes: alerting is off, and lintConfig has warned about it.
 */
function refuseUnsafeAlerting(config: Config): void {
  const problems = checkAlertingConfig(config.alerting);
  if (problems.length > 0) throw new ParleyError('config_invalid', problems.join('; '), { details: problems });
}

/** Builds the command tree; each action calls into the parts and sets process.exitCode. */
export function buildProgram(): Command {
  const program = new Command('parley')
    .description('Parley: a messenger that keeps its users talking through database failovers.')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .showSuggestionAfterError(true)
    .addHelpText('after', '\nExit codes: 0 success, 1 failure, 2 bad command line. Every failure prints one line "parley: <reason>" on stderr.');

  program
    .command('up')
    .description('start PostgreSQL and the app servers in the foreground; Ctrl-C or "parley down" stops them')
    .option('--dir <dir>', 'state directory (data, logs, secrets)', '.parley')
    .option('--config <file>', 'YAML or JSON configuration file (PARLEY_* environment variables override it)')
    .option('--nodes <n>', 'PostgreSQL nodes, overrides cluster.nodes (default 3): a primary and N-1 synchronous standbys', integer('--nodes'))
    .option('--app-servers <n>', 'app servers on consecutive ports, overrides app.servers (default 1)', integer('--app-servers'))
    .option('--port <port>', 'HTTP port of the first app server, overrides http.port (default 8080)', integer('--port'))
    .action(async (options: { dir: string; config?: string; nodes?: number; appServers?: number; port?: number }) => {
      // What `parley config check` refuses, `up` refuses too, before DIR is touched (the flags go
      // in as runUp applies them). supervisor/ may not import alerting/, so the check is made here.
      const overrides = {
        ...(options.nodes !== undefined ? { cluster: { nodes: options.nodes } } : {}),
        ...(options.appServers !== undefined ? { app: { servers: options.appServers } } : {}),
        ...(options.port !== undefined ? { http: { port: options.port } } : {}),
      };
      refuseUnsafeAlerting(loadConfig({ file: options.config, env: process.env, overrides }));
      process.exitCode = await runUp({
        dir: options.dir,
        configFile: options.config,
        nodes: options.nodes,
        appServers: options.appServers,
        port: options.port,
      });
    });

  program
    .command('down')
    .description('stop the "parley up" running in DIR and wait until it has stopped')
    .option('--dir <dir>', 'state directory of the running "parley up"', '.parley')
    .action(async (options: { dir: string }) => {
      const { pid } = await stopRunning({ dir: options.dir, out: say });
      say(`Parley in ${statePaths(options.dir).dir} stopped (supervisor pid ${pid})`);
    });

  program
    .command('status')
    .description('show nodes, app servers and alerts of the "parley up" running in DIR')
    .option('--dir <dir>', 'state directory of the running "parley up"', '.parley')
    .option('--json', 'print the machine-readable document described in docs/cli.md')
    .action(async (options: { dir: string; json?: boolean }) => {
      const status = await readStatus({ dir: options.dir });
      say(options.json ? JSON.stringify(status, null, 2) : formatStatus(status));
    });

  const config = program.command('config').description('configuration tools');
  config
    .command('check')
    .description('check a configuration file (with PARLEY_* environment overrides); one line per problem, naming the key')
    .argument('[file]', 'YAML or JSON file; without it, the defaults plus the environment are checked')
    .action((file: string | undefined) => {
      const checked = loadConfig({ file, env: process.env });
      // Valid but risky settings: one line each on stderr, naming the key; not a failure.
      for (const finding of lintConfig(checked)) complain(`warning: ${finding.key}: ${finding.message}`);
      refuseUnsafeAlerting(checked);
      say(`ok: ${file ?? 'defaults + PARLEY_* environment'}`);
    });

  const maintenance = program
    .command('maintenance')
    .description('maintenance mode: no automatic failover, agents leave PostgreSQL alone; ends by itself at its ttl');
  maintenance
    .command('start')
    .description('turn maintenance on; returns once every live agent has acknowledged it')
    .requiredOption('--reason <text>', 'why (goes to the journal with your OS user)')
    .option('--ttl <duration>', 'how long before it ends by itself, e.g. 30m, 1h, 1h30m (default maintenance.defaultTtlMs, 1 h)')
    .option('--node <name>', 'one standby only: left alone and never promoted while the rest fails over as usual')
    .option('--switchover-to <node>', 'with --node naming the primary: switch over to this standby first')
    .option('--dir <dir>', 'state directory of the running "parley up"', '.parley')
    .option('--config <file>', 'configuration file (for maintenance.* limits)')
    .action(async (options: { reason: string; ttl?: string; node?: string; switchoverTo?: string; dir: string; config?: string }) => {
      const started = await startMaintenance({ dir: options.dir, reason: options.reason, ttl: options.ttl, node: options.node, switchoverTo: options.switchoverTo, configFile: options.config, out: say });
      say(
        options.node === undefined
          ? `maintenance on until ${started.expiresAt}; acknowledged by ${started.acknowledgedBy.join(', ') || 'no running agent'}; no automatic failover until it ends`
          : `maintenance of ${options.node} on until ${started.expiresAt}; acknowledged by ${started.acknowledgedBy.join(', ') || 'no running agent'}; ${options.node} is out of the synchronous set (writes never wait for it), left alone and never promoted until it ends`,
      );
    });
  maintenance
    .command('stop')
    .description('turn maintenance off; returns once every live agent has acknowledged it')
    .requiredOption('--reason <text>', 'why (goes to the journal with your OS user)')
    .option('--node <name>', 'the node whose maintenance ends (refused if another is on)')
    .option('--dir <dir>', 'state directory of the running "parley up"', '.parley')
    .option('--config <file>', 'configuration file (for maintenance.* limits)')
    .action(async (options: { reason: string; node?: string; dir: string; config?: string }) => {
      const stopped = await stopMaintenance({ dir: options.dir, reason: options.reason, node: options.node, configFile: options.config });
      say(`maintenance ${stopped.wasOn ? 'off' : 'was not on; recorded as off'}; acknowledged by ${stopped.acknowledgedBy.join(', ') || 'no running agent'}`);
    });
  maintenance
    .command('run')
    .description('maintenance on, run COMMAND, wait for a healthy cluster, maintenance off; on failure it stays on')
    .requiredOption('--reason <text>', 'why (goes to the journal with your OS user)')
    .option('--ttl <duration>', 'ttl of the maintenance, e.g. 30m (default maintenance.defaultTtlMs)')
    .option('--node <name>', 'one standby only (see maintenance start)')
    .option('--switchover-to <node>', 'with --node naming the primary: switch over to this standby first')
    .option('--dir <dir>', 'state directory of the running "parley up"', '.parley')
    .option('--config <file>', 'configuration file (for maintenance.* limits)')
    .argument('<command...>', 'the command and its arguments, after --')
    .action(async (command: string[], options: { reason: string; ttl?: string; node?: string; switchoverTo?: string; dir: string; config?: string }) => {
      await runMaintenance({ dir: options.dir, reason: options.reason, ttl: options.ttl, node: options.node, switchoverTo: options.switchoverTo, configFile: options.config, command, out: say });
    });

  program
    .command('switchover')
    .description('hand the primary role to a standby: checks first, then a handover that completes or rolls back')
    .requiredOption('--to <node>', 'the standby that becomes primary')
    .requiredOption('--reason <text>', 'why (goes to the journal with your OS user)')
    .option('--dir <dir>', 'state directory of the running "parley up"', '.parley')
    .option('--config <file>', 'configuration file')
    .action(async (options: { to: string; reason: string; dir: string; config?: string }) => {
      const done = await runSwitchover({ dir: options.dir, to: options.to, reason: options.reason, configFile: options.config, out: say });
      say(`switchover done: ${options.to} is the primary (${done.tookMs} ms from the request)`);
    });

  program
    .command('failover')
    .description('make a standby the primary when no healthy primary exists; refused without proof of every acknowledged write unless --force')
    .requiredOption('--to <node>', 'the standby that becomes primary')
    .requiredOption('--reason <text>', 'why (goes to the journal with your OS user)')
    .option('--force', 'promote even without proof; says (and journals) what may be lost')
    .option('--dir <dir>', 'state directory of the running "parley up"', '.parley')
    .option('--config <file>', 'configuration file')
    .action(async (options: { to: string; reason: string; force?: boolean; dir: string; config?: string }) => {
      const done = await runManualFailover({ dir: options.dir, to: options.to, force: options.force === true, reason: options.reason, configFile: options.config, out: say });
      say(`failover done: ${options.to} is the primary (${done.detail})`);
    });

  const alerts = program
    .command('alerts')
    .description('list firing, pending and recently resolved alerts of the "parley up" running in DIR')
    .option('--dir <dir>', 'state directory of the running "parley up"', '.parley')
    .option('--json', 'print the machine-readable list described in docs/cli.md')
    .action(async (options: { dir: string; json?: boolean }) => {
      const list = await readAlerts({ dir: options.dir });
      say(options.json ? JSON.stringify({ alerts: list }, null, 2) : formatAlerts(list));
    });
  alerts
    .command('ack')
    .description('acknowledge an alert: its escalation stops; journaled with who and when')
    .argument('<id>', 'the alert id (parley alerts shows it)')
    .option('--by <name>', 'who acknowledges (default: your OS user)')
    .action(async (id: string, _options: unknown, command: Command) => {
      // --dir is the parent's option (parley alerts [--dir DIR] ack ID), wherever it is written.
      const options = command.optsWithGlobals<{ by?: string; dir: string }>();
      const by = options.by ?? process.env.SUDO_USER ?? process.env.USER ?? 'operator';
      const done = await ackAlert({ dir: options.dir, id, by });
      say(done.already ? `${id} was already acknowledged by ${done.by} at ${done.at}` : `${id} acknowledged by ${done.by} at ${done.at}; escalation stopped`);
    });

  program
    .command('drill')
    .description(`replay an outage against the running cluster with real faults and check that nothing acknowledged was lost (scenarios: ${scenarios.join(', ')}; docs/drills.md)`)
    .argument('<scenario>', 'which drill: july-30 replays the outage of 2024-07-30 link by link')
    .option('--users <n>', 'users sending through the API all along (2–200)', integer('--users'), 10)
    .option('--duration <s>', 'seconds each step holds its fault or load (1–600)', integer('--duration'), 5)
    .option('--dir <dir>', 'state directory of the running "parley up"', '.parley')
    .option('--config <file>', 'configuration file of the running "parley up"')
    .option('--json', 'print the report as JSON (docs/drills.md)')
    .action(async (scenario: string, options: { users: number; duration: number; dir: string; config?: string; json?: boolean }) => {
      const report = await runDrill({ dir: options.dir, scenario, users: options.users, durationS: options.duration, configFile: options.config, out: options.json ? undefined : say });
      say(options.json ? JSON.stringify(report, null, 2) : `\n${formatDrillReport(report)}`);
      if (!report.passed) process.exitCode = exitFailure;
    });

  // Read from DIR/journal.jsonl itself: works whether or not Parley is running.
  const incidents = program
    .command('incidents')
    .description('list the incidents the journal of DIR holds (critical alerts and automatic failovers, with what happened meanwhile)')
    .option('--dir <dir>', 'state directory of "parley up"', '.parley')
    .option('--json', 'print the machine-readable list described in docs/incidents.md')
    .action((options: { dir: string; json?: boolean }) => {
      const list = readIncidents(statePaths(options.dir).journalFile, Date.now());
      say(options.json ? JSON.stringify({ incidents: list }, null, 2) : formatIncidents(list, Date.now()));
    });
  incidents
    .command('show')
    .description('one incident: its alerts, pages, acknowledgements and timeline')
    .argument('<id>', 'the incident id (parley incidents shows it)')
    .option('--json', 'print the incident as JSON')
    .action((id: string, _options: unknown, command: Command) => {
      const options = command.optsWithGlobals<{ dir: string; json?: boolean }>();
      const incident = findIncident(readIncidents(statePaths(options.dir).journalFile, Date.now()), id);
      say(options.json ? JSON.stringify(incident, null, 2) : formatIncident(incident, Date.now()));
    });
  incidents
    .command('export')
    .description('a postmortem draft of one incident, in the format of the July 2024 postmortem (docs/incidents.md), on standard output')
    .argument('<id>', 'the incident id (parley incidents shows it)')
    .action((id: string, _options: unknown, command: Command) => {
      const options = command.optsWithGlobals<{ dir: string }>();
      const incident = findIncident(readIncidents(statePaths(options.dir).journalFile, Date.now()), id);
      process.stdout.write(renderPostmortem(incident, { nowIso: new Date().toISOString(), exportedBy: process.env.SUDO_USER ?? process.env.USER }));
    });

  const operator = program.command('operator').description('operator accounts');
  operator
    .command('add')
    .description('give an existing account the operator role (ops API, ops console)')
    .argument('<username>', 'the account')
    .option('--dir <dir>', 'state directory of the running "parley up"', '.parley')
    .action(async (username: string, options: { dir: string }) => {
      await addOperator({ dir: options.dir, username });
      say(`${username} is now an operator`);
    });

  // Started by the supervisor, one per app server; not for people, hence hidden from --help.
  program
    .command('app-server', { hidden: true })
    .description('one app server process (started by parley up; follows the primary through the lease store)')
    .requiredOption('--dir <dir>', 'state directory of the supervisor')
    .requiredOption('--port <port>', 'port to listen on', integer('--port'))
    .option('--config <file>', 'configuration file')
    .action(async (options: { dir: string; port: number; config?: string }) => {
      await runAppServer({ dir: options.dir, port: options.port, configFile: options.config });
    });

  program
    .command('ops', { hidden: true })
    .description('the ops process (started by parley up): samples the cluster, evaluates alert rules, pages')
    .requiredOption('--dir <dir>', 'state directory of the supervisor')
    .option('--config <file>', 'configuration file')
    .action(async (options: { dir: string; config?: string }) => {
      await runOpsProcess({ dir: options.dir, configFile: options.config });
    });

  program
    .command('agent')
    .description("one node's failover agent (parley up starts one per node; on several machines, one per database host)")
    .requiredOption('--node <name>', 'the node this agent runs, e.g. node2')
    .option('--dir <dir>', 'state directory of the supervisor', '.parley')
    .option('--config <file>', 'configuration file')
    .action(async (options: { node: string; dir: string; config?: string }) => {
      await runAgentProcess({ dir: options.dir, node: options.node, configFile: options.config });
      // The agent has stopped its PostgreSQL; idle keep-alive sockets must not keep it running.
      process.exit(0);
    });

  for (const command of [program, ...program.commands, ...config.commands, ...maintenance.commands, ...operator.commands, ...alerts.commands, ...incidents.commands]) {
    command.exitOverride();
    // Commander's own error printing is replaced by the single line in `main`.
    command.configureOutput({ outputError: () => undefined, writeErr: () => undefined });
  }
  return program;
}

function report(error: unknown, argv: readonly string[]): number {
  if (error instanceof CommanderError) {
    if (error.exitCode === 0) return 0;
    if (error.code === 'commander.help') {
      // A group (`parley`, `parley config`) called without its subcommand.
      const words = argv.filter((arg) => !arg.startsWith('-'));
      complain(`missing command; see parley ${[...words, '--help'].join(' ')}`);
      return exitUsage;
    }
    complain(error.message.replace(/^error:\s*/, ''));
    return exitUsage;
  }
  if (isParleyError(error)) {
    const lines = error.details && error.details.length > 0 ? error.details : [error.message];
    for (const line of lines) complain(line);
    return error.code === 'cli_usage' ? exitUsage : exitFailure;
  }
  const message = error instanceof Error ? error.message : String(error);
  complain(`unexpected error: ${message}`);
  if (process.env.PARLEY_DEBUG && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  return exitFailure;
}

/** Parses argv (without node and script) and runs the command. */
export async function main(argv: readonly string[]): Promise<void> {
  const program = buildProgram();
  const longRunning = argv[0] === 'up' || argv[0] === 'app-server' || argv[0] === 'agent' || argv[0] === 'ops';
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    process.exitCode = report(error, argv);
  }
  const guardsExit = !longRunning || process.exitCode !== undefined;
  if (guardsExit) setTimeout(() => process.exit(), exitGuardMs).unref();
}

await main(process.argv.slice(2));
