// `npm run bench:monitoring` (also part of `npm run bench`): issue 7's alert-latency figure and
// issue 8's end-to-end delivery figure. On a three-node `parley up` whose configuration has an
// email channel pointed at an SMTP port nobody listens on (the channel is down) and a webhook
// channel pointed at a real HTTP receiver here, a black-box writer sends through the public API
// while one standby's WAL receiver is frozen with SIGSTOP, --repeat times (default 7), alternating
// standbys. Each round measures
//   - freeze → ReplicationStopped firing in the ops API (polled every 100 ms), target ≤ 10 s;
//   - firing (the alert's startsAt) → the webhook receiver holding its Alertmanager v4 payload with
//     status "firing", with the email channel down, target ≤ 5 s;
// then thaws the receiver and waits for the resolution to reach the webhook too.
// The figures go into docs/benchmarks.md between the bench-monitoring markers, with the machine.
// Everything started is stopped on every path (test/harness.ts cleanUp), and the run is bounded.
import { writeFileSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { cpus, release, totalmem } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { findPgBinaries, freePort } from '../src/postgres/postgres.ts';
import { cleanUp, freePortRun, makeDir, startUp, waitUntil, waitUp } from '../test/harness.ts';
import { clusterHealthy, clusterStatus, postmasterChild } from '../test/cluster.ts';
import { startWriter } from '../test/writer.ts';
import { writeReport } from './bench/report.ts';
import { median } from './bench/stats.ts';

const repoDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const reportFile = join(repoDir, 'docs', 'benchmarks.md');
const markers = { start: '<!-- bench-monitoring:start -->', end: '<!-- bench-monitoring:end -->' };
const targetAlertMs = 10_000;
const targetDeliveryMs = 5_000;
const runDeadlineMs = 15 * 60_000;
const roundTimeoutMs = 30_000;

const { values } = parseArgs({ options: { repeat: { type: 'string', default: '7' } } });
const repeat = Number(values.repeat);
if (!Number.isInteger(repeat) || repeat < 1 || repeat > 50) {
  process.stderr.write(`bench-monitoring: --repeat must be a whole number from 1 to 50, got "${values.repeat}"\n`);
  process.exit(2);
}

const started = Date.now();
const log = (line: string): void => void process.stdout.write(`[monitoring ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
let receiver: Server | undefined;
const deadline = setTimeout(() => {
  log(`stopping: the run passed its ${runDeadlineMs / 60_000} min bound`);
  receiver?.close();
  void cleanUp().finally(() => process.exit(1));
}, runDeadlineMs);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    receiver?.close();
    void cleanUp().finally(() => process.exit(1));
  });
}

interface Received {
  atMs: number;
  body: { version: string; status: string; alerts: Array<{ status: string; labels: Record<string, string>; startsAt: string }> };
}


interface Round {
  node: string;
  alertMs: number;
  deliveryMs: number;
  resolvedDeliveredMs: number;
}

async function main(): Promise<void> {
  const received: Received[] = [];
  receiver = createServer((request, response) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString()));
    request.on('end', () => {
      try {
        received.push({ atMs: Date.now(), body: JSON.parse(text) as Received['body'] });
      } catch {
        // not JSON: not counted
      }
      response.writeHead(200).end();
    });
  });
  const hookPort = await new Promise<number>((resolve) => receiver!.listen(0, '127.0.0.1', () => resolve((receiver!.address() as { port: number }).port)));
  // An SMTP port nobody listens on: the email channel is down for the whole run.
  const deadSmtpPort = await freePort();
  const base = makeDir();
  const configFile = join(base, 'parley.yaml');
  writeFileSync(
    configFile,
    [
      'alerting:',
      '  channels:',
      `    - { name: mail, type: email, smtp: { host: 127.0.0.1, port: ${deadSmtpPort} }, from: parley@localhost, to: [oncall@localhost] }`,
      `    - { name: hook, type: webhook, url: "http://127.0.0.1:${hookPort}/alerts" }`,
      '',
    ].join('\n'),
  );
  const dir = join(base, 'state');
  const port = await freePort();
  const up = startUp(dir, port, await freePortRun(3), { PARLEY_CLUSTER_NODES: '3', PARLEY_HTTP_RATE_LIMIT_PER_MINUTE: '1000000' }, ['--config', configFile]);
  await waitUp(up, dir);
  const url = `http://127.0.0.1:${port}`;
  const ops = (): { url: string } => JSON.parse(readFileSync(join(dir, 'ops.json'), 'utf8')) as { url: string };
  interface Listed { id: string; name: string; node: string | null; status: string; startsAt: string | null }
  const alerts = async (): Promise<Listed[]> => ((await (await fetch(`${ops().url}/v1/ops/alerts`, { signal: AbortSignal.timeout(5000) })).json()) as { alerts: Listed[] }).alerts;
  const writer = await startWriter(url);
  await writer.waitForAcks(20, 60_000);
  const rounds: Round[] = [];
  for (let i = 1; i <= repeat; i++) {
    await waitUntil('one primary with the lease and two quorum standbys', () => clusterHealthy(dir), 90_000);
    await waitUntil('no replication alert firing', async () => !(await alerts()).some((a) => a.name === 'ReplicationStopped' && a.status === 'firing'), 60_000);
    const s = await clusterStatus(dir);
    const standbys = s.nodes.filter((n) => n.role === 'standby');
    const node = standbys[(i - 1) % standbys.length]!;
    const walReceiver = postmasterChild(node.pid!, 'walreceiver');
    const seenBefore = received.length;
    const frozenAt = Date.now();
    process.kill(walReceiver, 'SIGSTOP');
    let alert: Listed | undefined;
    try {
      await waitUntil(`ReplicationStopped for ${node.name}`, async () => {
        alert = (await alerts()).find((a) => a.name === 'ReplicationStopped' && a.node === node.name && a.status === 'firing');
        return alert !== undefined;
      }, roundTimeoutMs);
      const listedAt = Date.now();
      const hook = (status: string) => received.slice(seenBefore).find((r) => r.body.status === status && r.body.alerts.some((a) => a.labels.alertname === 'ReplicationStopped' && a.labels.node === node.name && a.status === status));
      await waitUntil('the webhook receives the firing alert', () => hook('firing') !== undefined, roundTimeoutMs);
      const firedAt = Date.parse(alert!.startsAt!);
      const delivered = hook('firing')!;
      if (delivered.body.version !== '4') throw new Error(`webhook payload version ${delivered.body.version}, expected "4"`);
      process.kill(walReceiver, 'SIGCONT');
      const thawedAt = Date.now();
      await waitUntil('the webhook receives the resolution', () => hook('resolved') !== undefined, roundTimeoutMs);
      const round: Round = { node: node.name, alertMs: firedAt - frozenAt, deliveryMs: delivered.atMs - firedAt, resolvedDeliveredMs: hook('resolved')!.atMs - thawedAt };
      rounds.push(round);
      log(`round ${i}/${repeat}: froze ${node.name}'s WAL receiver; firing ${round.alertMs} ms later (listed after ${listedAt - frozenAt} ms); webhook ${round.deliveryMs} ms after firing; resolution delivered ${round.resolvedDeliveredMs} ms after the thaw`);
    } finally {
      try {
        process.kill(walReceiver, 'SIGCONT');
      } catch {
        // gone
      }
    }
  }
  const report = await writer.stop();
  log(`writer: ${report.acked.length} acknowledged, ${report.failures.length} refused attempts`);
  writeReport(reportFile, render(rounds, report.acked.length, report.failures.length), markers);
  log(`wrote ${reportFile}`);
}

function render(rounds: Round[], acked: number, failures: number): string {
  const cpu = cpus();
  const verdict = (ok: boolean): string => (ok ? 'met' : '**missed**');
  const alertTimes = rounds.map((r) => r.alertMs);
  const delivery = rounds.map((r) => r.deliveryMs);
  const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  return [
    markers.start,
    '<!-- Generated by `npm run bench:monitoring` (scripts/bench-monitoring.ts); edits inside this block are overwritten. -->',
    '',
    `### Replication stopped → alert → page, end to end (${new Date().toISOString().slice(0, 10)})`,
    '',
    `Machine: ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}, Node ${process.version}, PostgreSQL ${findPgBinaries().major}.`,
    "Setup: `parley up --config` with 3 nodes; an `email` channel pointed at an SMTP port nobody listens on (down for the whole run) and a `webhook` channel pointed at an HTTP receiver on 127.0.0.1; one black-box writer through the public API. Each round freezes one standby's WAL receiver with SIGSTOP (alternating standbys), waits for the page, then SIGCONT.",
    '',
    '| figure | value | target |',
    '|---|---|---|',
    `| SIGSTOP of the WAL receiver → ReplicationStopped firing (the alert's own start time), median of ${rounds.length} | **${seconds(median(alertTimes))}** | ≤ ${targetAlertMs / 1000} s: ${verdict(median(alertTimes) <= targetAlertMs)} |`,
    `| the same, worst | ${seconds(Math.max(...alertTimes))} | ≤ 20 s (issue 7 "Done when"): ${verdict(Math.max(...alertTimes) <= 20_000)} |`,
    `| firing → Alertmanager v4 payload at the webhook with the email channel down, median / worst | **${seconds(median(delivery))} / ${seconds(Math.max(...delivery))}** | ≤ ${targetDeliveryMs / 1000} s: ${verdict(Math.max(...delivery) <= targetDeliveryMs)} |`,
    `| SIGCONT → resolution at the webhook, median | ${seconds(median(rounds.map((r) => r.resolvedDeliveredMs)))} | |`,
    '',
    `Each round: ${rounds.map((r) => `${r.node} ${seconds(r.alertMs)} + ${seconds(r.deliveryMs)}`).join(', ')}. The writer had ${acked} sends acknowledged and ${failures} refused attempts during the run (a frozen receiver of one standby leaves the other to acknowledge).`,
    'The rule (`src/monitor/rules.yaml`, ReplicationStopped): the standby\'s last message from the primary older than 3 s, held 2 s; the primary writes a heartbeat row every second, so a healthy receiver never looks stale. Sampling and evaluation run every second, so the alert fires 5–7 s after the freeze.',
    markers.end,
  ].join('\n');
}

main()
  .catch((error: unknown) => {
    process.stderr.write(`bench-monitoring: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    clearTimeout(deadline);
    receiver?.close();
    await cleanUp();
  });
