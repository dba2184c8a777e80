// `npm run bench:alerting` (also the last part of `npm run bench`): issue 8's delivery figure,
// "alert fired → delivered, with one channel down: ≤ 5 s" (DESIGN.md's targets).
//
// The alerting library runs here exactly as the ops process runs it: createAlerting() with a state
// directory, onTransition() for each firing, tick() every second. Two channels, as API.md's
// example: an email channel to a real SMTP server (smtp-server, src/alerting/receivers-testing.ts)
// that is down, and a webhook channel to a real HTTP receiver on 127.0.0.1. Each scenario:
//   1. fires --alerts critical alerts (default 100, at least 50), spread over time: a random
//      50–150 % of --spacing-ms (default 100 ms) between one firing and the next;
//   2. measures, per alert, firing (just before onTransition) → the webhook receiver has the POST;
//   3. keeps SMTP down until --down-seconds after the first firing, then starts the SMTP server on
//      the same port and measures how long until every alert's email has arrived.
// SMTP is down in two ways: `refused` (port closed: every attempt fails at once) and `silent`
// (a listener that accepts and never answers: every attempt runs into delivery.timeoutMs).
// Delivery settings are the defaults an operator gets. The figures go into docs/benchmarks.md
// between the bench-alerting markers, with the machine; every receiver, timer and state directory
// is stopped or removed on every path, and the whole run is bounded (runDeadlineMs).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { alertingConfigSchema, checkAlertingConfig, createAlerting, type AlertingConfig, type AlertingEvent } from '../src/alerting/alerting.ts';
import { createSmtpReceiver, startHttpReceiver } from '../src/alerting/receivers-testing.ts';
import { createCleanup, sleep } from './bench/cleanup.ts';
import { describeMachine, type Machine } from './bench/machine.ts';
import { startCpuMeter, type CpuSplit } from './bench/procfs.ts';
import { writeReport } from './bench/report.ts';
import { summarise, type Summary } from './bench/stats.ts';

const repoDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const reportFile = join(repoDir, 'docs', 'benchmarks.md');
const markers = { start: '<!-- bench-alerting:start -->', end: '<!-- bench-alerting:end -->' };
const command = 'npm run bench:alerting';
// DESIGN.md: alert fired → delivered, with one channel down.
const targetMs = 5_000;
// Bounds: the whole run; every webhook after the last firing; every email after SMTP is back.
// With the default delivery settings an email waits at most one round's backoff (≤ 8 s) or the
// pause between rounds (maxBackoffMs, 30 s) once SMTP answers again, so 150 s is ample.
const runDeadlineMs = 10 * 60_000;
const webhooksTimeoutMs = 60_000;
const emailsTimeoutMs = 150_000;
// The ops process ticks alerting this often (retry rounds start on a tick).
const tickMs = 1000;

type DownMode = 'refused' | 'silent';

const { values } = parseArgs({
  options: {
    alerts: { type: 'string', default: '100' },
    'spacing-ms': { type: 'string', default: '100' },
    'down-seconds': { type: 'string', default: '20' },
    modes: { type: 'string', default: 'refused,silent' },
  },
});

function whole(name: string, text: string | undefined, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`bench-alerting: --${name} must be a whole number from ${min} to ${max}, got "${text}"\n`);
    process.exit(2);
  }
  return n;
}
const alertCount = whole('alerts', values.alerts, 50, 1000);
const spacingMs = whole('spacing-ms', values['spacing-ms'], 10, 10_000);
const downSeconds = whole('down-seconds', values['down-seconds'], 1, 120);
const modes = (values.modes ?? '').split(',').filter((m) => m !== '') as DownMode[];
if (modes.length === 0 || modes.some((m) => m !== 'refused' && m !== 'silent')) {
  process.stderr.write(`bench-alerting: --modes must list refused and/or silent, got "${values.modes}"\n`);
  process.exit(2);
}

const started = Date.now();
const log = (line: string): void => void process.stdout.write(`[alerting ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
const cleanup = createCleanup({ deadlineMs: runDeadlineMs, log });

/** What one scenario measured. */
interface Scenario {
  mode: DownMode;
  alerts: number;
  firingSeconds: number;
  /** Firing → the webhook receiver has the POST, per alert. */
  webhookMs: Summary;
  webhooksReceived: number;
  webhookAttemptsFailed: number;
  /** Email attempts that failed while SMTP was down. */
  emailAttemptsFailed: number;
  /** How long SMTP stayed down, counted from the first firing. */
  downMs: number;
  /** SMTP started → the last alert's email arrived. */
  allEmailsMs: number;
  /** SMTP started → each alert's email, per alert. */
  emailAfterStartMs: Summary;
  /** Firing → its email, per alert (mostly the time SMTP was down). */
  emailMs: Summary;
  emailsReceived: number;
  emailsDistinct: number;
  gaveUp: number;
  /** CPU while firing and delivering the webhooks. */
  cpu: CpuSplit;
}

/** A listener that accepts TCP connections and never says a word: an SMTP relay that hangs. */
async function startSilentListener(port: number): Promise<{ close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Resolves when `promise` does, or rejects after `ms` naming `what`. */
async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s waiting for ${what}`)), ms);
      }),
      new Promise<never>((_, reject) => cleanup.signal.addEventListener('abort', () => reject(cleanup.signal.reason as Error), { once: true })),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function fingerprintOf(body: unknown): string | undefined {
  const alerts = (body as { alerts?: { fingerprint?: unknown }[] } | null)?.alerts;
  const fingerprint = Array.isArray(alerts) ? alerts[0]?.fingerprint : undefined;
  return typeof fingerprint === 'string' ? fingerprint : undefined;
}

async function runScenario(mode: DownMode): Promise<Scenario> {
  const stateDir = mkdtempSync(join(tmpdir(), 'parley-bench-alerting-'));
  const removeState = cleanup.add(`state directory ${stateDir}`, async () => rmSync(stateDir, { recursive: true, force: true }));
  const hook = await startHttpReceiver();
  const stopHook = cleanup.add('webhook receiver', () => hook.close());
  const smtp = await createSmtpReceiver();
  const stopSmtp = cleanup.add('SMTP receiver', () => smtp.stop());
  let silent: { close(): Promise<void> } | undefined;
  let stopSilent: (() => Promise<void>) | undefined;
  if (mode === 'silent') {
    const listener = await startSilentListener(smtp.port);
    silent = listener;
    stopSilent = cleanup.add('silent SMTP listener', () => listener.close());
  }

  const config: AlertingConfig = alertingConfigSchema.parse({
    channels: [
      { name: 'mail', type: 'email', smtp: { host: '127.0.0.1', port: smtp.port }, from: 'parley@localhost', to: ['oncall@localhost'] },
      { name: 'hook', type: 'webhook', url: `${hook.url}/alerts` },
    ],
  });
  const problems = checkAlertingConfig(config);
  if (problems.length > 0) throw new Error(`the benchmark's own configuration is refused: ${problems.join('; ')}`);

  const events: AlertingEvent[] = [];
  const alerting = await createAlerting({ config, stateDir, journal: (event) => void events.push(event) });
  const closeAlerting = cleanup.add('alerting', () => alerting.close());
  let ticking = false;
  const ticker = setInterval(() => {
    if (ticking) return; // a slow tick is not overlapped by the next
    ticking = true;
    alerting
      .tick(Date.now())
      .catch((error: unknown) => log(`tick failed: ${(error as Error).message}`))
      .finally(() => (ticking = false));
  }, tickMs);
  const stopTicker = cleanup.add('alerting tick', async () => clearInterval(ticker));

  const run = randomBytes(4).toString('hex');
  const firedAt = new Map<string, number>();
  const webhookAt = new Map<string, number>();
  const emailAt = new Map<string, number>();
  const webhooks: Promise<unknown>[] = [];
  const emails: Promise<unknown>[] = [];
  log(`${mode}: SMTP on 127.0.0.1:${smtp.port} is down (${mode === 'refused' ? 'port closed' : 'accepts, never answers'}); firing ${alertCount} critical alerts, ${spacingMs} ms apart on average`);

  const meter = startCpuMeter({});
  const firstFiredAt = performance.now();
  for (let i = 0; i < alertCount; i++) {
    const id = `bench-${run}-${String(i).padStart(4, '0')}`;
    // Waiters first: the receivers resolve them synchronously on arrival, so the time is exact.
    webhooks.push(hook.waitFor((r) => fingerprintOf(r.body) === id).then(() => void webhookAt.set(id, performance.now())));
    emails.push(smtp.waitFor((m) => m.raw.includes(`X-Parley-Alert: ${id}`)).then(() => void emailAt.set(id, performance.now())));
    firedAt.set(id, performance.now());
    await alerting.onTransition({
      id,
      name: 'BenchReplicationStopped',
      severity: 'critical',
      node: `node${(i % 3) + 1}`,
      summary: `benchmark alert ${i + 1} of ${alertCount}`,
      startsAt: new Date().toISOString(),
      status: 'firing',
    });
    if (i < alertCount - 1) await sleep(spacingMs * (0.5 + Math.random()), cleanup.signal);
  }
  const firingSeconds = (performance.now() - firstFiredAt) / 1000;
  await within(`every webhook (${webhookAt.size} of ${alertCount} so far)`, webhooksTimeoutMs, Promise.all(webhooks));
  const cpu = meter();
  const webhookMs = summarise([...webhookAt].map(([id, at]) => at - firedAt.get(id)!));
  log(`${mode}: ${webhookAt.size} webhooks; firing → webhook p50 ${webhookMs.p50.toFixed(1)} ms, p99 ${webhookMs.p99.toFixed(1)} ms, max ${webhookMs.max.toFixed(1)} ms`);

  const upAt = firstFiredAt + downSeconds * 1000;
  if (performance.now() < upAt) await sleep(upAt - performance.now(), cleanup.signal);
  const emailAttemptsFailed = events.filter((e) => e.kind === 'attempt' && e.channel === 'mail' && !e.ok).length;
  if (smtp.items.length > 0) throw new Error(`${smtp.items.length} emails arrived while SMTP was down`);
  if (silent !== undefined) await stopSilent!();
  const smtpStartedAt = performance.now();
  await smtp.start();
  log(`${mode}: SMTP started after ${((smtpStartedAt - firstFiredAt) / 1000).toFixed(1)} s down (${emailAttemptsFailed} email attempts failed meanwhile); waiting for ${alertCount} emails`);
  await within(`every email (${emailAt.size} of ${alertCount} so far)`, emailsTimeoutMs, Promise.all(emails));
  const allEmailsMs = Math.max(...emailAt.values()) - smtpStartedAt;
  log(`${mode}: every email arrived ${(allEmailsMs / 1000).toFixed(1)} s after SMTP started`);

  // Stop first, then count: close() waits for deliveries under way, so a late duplicate is counted.
  await stopTicker();
  await closeAlerting();
  const received = smtp.items.filter((m) => m.raw.includes(`X-Parley-Alert: bench-${run}-`));
  const scenario: Scenario = {
    mode,
    alerts: alertCount,
    firingSeconds,
    webhookMs,
    webhooksReceived: hook.items.length,
    webhookAttemptsFailed: events.filter((e) => e.kind === 'attempt' && e.channel === 'hook' && !e.ok).length,
    emailAttemptsFailed,
    downMs: smtpStartedAt - firstFiredAt,
    allEmailsMs,
    emailAfterStartMs: summarise([...emailAt.values()].map((at) => at - smtpStartedAt)),
    emailMs: summarise([...emailAt].map(([id, at]) => at - firedAt.get(id)!)),
    emailsReceived: received.length,
    emailsDistinct: new Set(received.map((m) => /X-Parley-Alert: (\S+)/.exec(m.raw)?.[1])).size,
    gaveUp: events.filter((e) => e.kind === 'gave-up').length,
    cpu,
  };
  await stopSmtp();
  await stopHook();
  await removeState();
  return scenario;
}

const s = (ms: number): string => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : 'n/a');
const msText = (ms: number): string => (Number.isFinite(ms) ? `${ms.toFixed(ms < 10 ? 2 : 1)} ms` : 'n/a');
const verdict = (ok: boolean): string => (ok ? 'met' : '**missed**');

function render(machine: Machine, config: AlertingConfig, scenarios: readonly Scenario[], failures: readonly string[]): string {
  const d = config.delivery;
  const down = (mode: DownMode): string => (mode === 'refused' ? 'refused (port closed)' : 'silent (accepts, never answers)');
  const lines = [
    markers.start,
    '<!-- Generated by `npm run bench:alerting` (scripts/bench-alerting.ts); edits inside this block are overwritten. -->',
    '',
    `### Alert delivery with the SMTP channel down (${new Date().toISOString()})`,
    '',
    `Command: \`${command}\` (from the repository root; also the last part of \`npm run bench\`), total runtime ${((Date.now() - started) / 1000).toFixed(0)} s.`,
    '',
    `Machine: ${machine.cores} cores, ${machine.cpuModel}, ${(machine.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${machine.kernel}, Node ${machine.node}; ` +
      `the alerting state file lives on ${machine.dataFilesystem}, where one 8 kB write + fdatasync takes ${machine.fdatasyncMicros.toFixed(0)} µs (median of 200).`,
    '',
    `Set-up: the alerting library as the ops process runs it (\`createAlerting()\`, \`onTransition()\` per firing, \`tick()\` every ${tickMs / 1000} s, its state saved with fsync before every page), ` +
      `with API.md's two channels: \`email\` to a real SMTP server (smtp-server) on 127.0.0.1, down, and \`webhook\` to a real HTTP receiver on 127.0.0.1. ` +
      `The default policy pages both channels at once. Delivery settings are the defaults: attempt timeout ${d.timeoutMs} ms, ${d.retries} retries per round with full-jitter backoff from ${d.backoffMs} ms, ` +
      `${d.maxBackoffMs / 1000} s between rounds. Receivers, alerting and this script share one process; the times are \`performance.now()\` from just before \`onTransition()\` to the receiver having the request.`,
    '',
    `Each scenario fires ${alertCount} critical alerts, a random 50–150 % of ${spacingMs} ms apart; SMTP comes back ${downSeconds} s after the first firing, on the same port.`,
    '',
    '| SMTP down as | firing → webhook p50 / p99 / max | target (≤ 5 s, one channel down) | SMTP back → every email | firing → email max | emails received (distinct) | email attempts failed while down | given up |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of scenarios) {
    lines.push(
      `| ${down(r.mode)} | **${msText(r.webhookMs.p50)} / ${msText(r.webhookMs.p99)} / ${msText(r.webhookMs.max)}** (${r.webhooksReceived} of ${r.alerts}) | ${verdict(r.webhookMs.max <= targetMs && r.webhooksReceived === r.alerts)} | **${s(r.allEmailsMs)}** (p50 ${s(r.emailAfterStartMs.p50)}) | ${s(r.emailMs.max)} | ${r.emailsReceived} (${r.emailsDistinct}) | ${r.emailAttemptsFailed} | ${r.gaveUp} |`,
    );
  }
  for (const failure of failures) lines.push(`| ${failure} | not measured | | | | | | |`);
  lines.push('');
  for (const r of scenarios) {
    lines.push(
      `- ${r.mode}: firing took ${r.firingSeconds.toFixed(1)} s; SMTP was down ${s(r.downMs)}; failed webhook attempts ${r.webhookAttemptsFailed}; ` +
        `CPU while firing: this process ${r.cpu.generator.toFixed(2)} cores, other processes ${r.cpu.others.toFixed(2)}${r.cpu.topOthers[0] ? ` (busiest: \`${r.cpu.topOthers[0].command.replace(/`/g, "'")}\` ${r.cpu.topOthers[0].cores.toFixed(2)})` : ''}, whole machine ${r.cpu.machine.toFixed(2)} of ${machine.cores}.`,
    );
  }
  lines.push(
    '',
    'How to read it: the webhook never waits for the email channel (each channel is delivered on its own), so its latency is the cost of deciding, saving the state (fsync) and one local POST. ' +
      "Once SMTP answers again, an email waits for its round's next retry (at most 8 s with these settings) or, if its round had already failed, for the next round (up to maxBackoffMs = 30 s later): " +
      'that, not the SMTP server, bounds "SMTP back → every email". More emails than alerts would be duplicates (a page is sent at least once).',
    markers.end,
  );
  return lines.join('\n');
}

async function main(): Promise<void> {
  const machine = describeMachine('pgbench', 1024);
  log(`${machine.cores} cores (${machine.cpuModel}), Node ${machine.node}; ${alertCount} alerts per scenario, scenarios: ${modes.join(', ')}`);
  const scenarios: Scenario[] = [];
  const failures: string[] = [];
  for (const mode of modes) {
    try {
      scenarios.push(await runScenario(mode));
    } catch (error) {
      if (cleanup.signal.aborted) throw error;
      log(`${mode}: not measured: ${(error as Error).message}`);
      failures.push(`${mode}: ${(error as Error).message.replace(/\|/g, '/')}`);
      await cleanup.runAll();
    }
  }
  const config = alertingConfigSchema.parse({});
  writeReport(reportFile, render(machine, config, scenarios, failures), markers);
  log(`wrote ${reportFile}`);
  if (failures.length > 0) process.exitCode = 1;
}

main()
  .catch((error: unknown) => {
    process.stderr.write(`bench-alerting: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await cleanup.runAll();
    // Nothing of ours is left running; an idle keep-alive socket must not hold the exit.
    process.exit();
  });
