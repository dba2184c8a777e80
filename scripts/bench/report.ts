// docs/benchmarks.md: the generated block between the markers is rewritten on every run; anything
// outside it is written by people and kept as it is.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { IdleSocketsResult } from './idle-sockets.ts';
import type { OpenLoopResult } from './latency.ts';
import type { Machine } from './machine.ts';
import { overloadInFlightMax, type ClassOutcome, type OverloadResult } from './overload.ts';
import type { CpuSplit } from './procfs.ts';
import type { StatementsReport } from './statements.ts';
import type { Summary } from './stats.ts';
import type { ClosedLoopResult, PgbenchResult } from './throughput.ts';

/** Other processes using this many cores during a run disturb its figures. */
export const disturbedCores = 0.25;

/** The markers around the generated block. */
export const blockStart = '<!-- bench:start -->';
export const blockEnd = '<!-- bench:end -->';

/** A section's outcome: its figures, or why there are none. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Everything one run measured. */
export interface BenchRun {
  command: string;
  startedAt: Date;
  runtimeSeconds: number;
  machine: Machine;
  postgres: { version: string; settings: Record<string, string> };
  appEnv: Record<string, string>;
  parameters: { clients: number; seconds: number; warmupSeconds: number; settleSeconds: number; sockets: number; clientProcesses: number; accounts: number; poolSize: number };
  throughput: Outcome<{
    pgbench: PgbenchResult;
    many: ClosedLoopResult;
    hot: ClosedLoopResult;
    cpu: { pgbench: CpuSplit; many: CpuSplit; hot: CpuSplit };
    /** Runs made of each (more than one when other processes disturbed the first). */
    attempts: { pgbench: number; many: number; hot: number };
    statements: { pgbench: StatementsReport; many: StatementsReport };
  }>;
  latency: Outcome<{ result: OpenLoopResult; cpu: CpuSplit; receiversPerConversation: number; conversations: number }>;
  idle: Outcome<IdleSocketsResult>;
  /** Processes of the run that died without being asked to. */
  unexpectedExits: string[];
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;
const fixed = (value: number, digits = 1): string => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
const int = (value: number): string => (Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a');
const ms = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(value < 1 ? 3 : value < 10 ? 2 : 1)} ms` : 'n/a');
const pass = (ok: boolean): string => (ok ? '**met**' : '**not met**');

function errorsText(errors: Record<string, number>): string {
  const entries = Object.entries(errors);
  return entries.length === 0 ? 'none' : entries.map(([status, count]) => `${count} × ${status}`).join(', ');
}

const cpuHeader = [
  '| run | app server | PostgreSQL | load generator | pgbench | interrupts | other processes | whole machine (steal) |',
  '|---|---|---|---|---|---|---|---|',
];

function cpuRow(label: string, cpu: CpuSplit): string {
  return `| ${label} | ${fixed(cpu.appServer, 2)} | ${fixed(cpu.postgres, 2)} | ${fixed(cpu.generator, 2)} | ${fixed(cpu.pgbench, 2)} | ${fixed(cpu.interrupts, 2)} | ${fixed(cpu.others, 2)} | ${fixed(cpu.machine, 2)} (${fixed(cpu.steal, 2)}) |`;
}

/** CPU time per operation over a whole run (warm-up included, so divided by every operation). */
function cpuPerOp(cpu: CpuSplit, operations: number, isPgbench: boolean): string {
  const per = (cores: number): string => ms((cores * cpu.wallSeconds * 1000) / operations);
  return isPgbench ? `PostgreSQL ${per(cpu.postgres)} (+ pgbench ${per(cpu.pgbench)})` : `app ${per(cpu.appServer)} + PostgreSQL ${per(cpu.postgres)}`;
}

function othersNote(runs: readonly [string, CpuSplit, number][]): string {
  const lines: string[] = [];
  for (const [label, cpu, attempts] of runs) {
    const disturbed = cpu.others >= disturbedCores;
    if (attempts > 1) {
      lines.push(
        `${label}: measured ${attempts} times because other processes used ${fixed(disturbedCores, 2)} cores or more; the least disturbed run is shown${disturbed ? ', and it was still disturbed' : ''}.`,
      );
    } else if (disturbed) lines.push(`${label}: disturbed by other processes.`);
    if (cpu.others >= 0.1) {
      lines.push(`${label}, other processes: ${cpu.topOthers.map((o) => `\`${o.command.replace(/`/g, "'")}\` ${fixed(o.cores, 2)}`).join(', ')}.`);
    }
  }
  return lines.length === 0 ? 'No other process used a noticeable share of the CPU during these runs.' : lines.map((l) => `- ${l}`).join('\n');
}

function latencyCells(summary: Summary): string {
  return `${ms(summary.p50)} | ${ms(summary.p90)} | ${ms(summary.p99)} | ${ms(summary.max)}`;
}

/** Renders the generated block (markers included). */
export function renderBlock(run: BenchRun): string {
  const m = run.machine;
  const p = run.parameters;
  const lines: string[] = [blockStart, '<!-- Generated by `npm run bench` (scripts/bench.ts); edits inside this block are overwritten. -->', ''];
  lines.push(`## Latest run: ${run.startedAt.toISOString()}`, '');
  lines.push(`Command: \`${run.command}\` (from the repository root), total runtime ${fixed(run.runtimeSeconds, 0)} s.`, '');
  lines.push('| machine | |', '|---|---|');
  lines.push(`| CPU | ${m.cores} cores, ${m.cpuModel} |`);
  lines.push(`| memory | ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB |`);
  lines.push(`| kernel | ${m.kernel} |`);
  lines.push(`| Node | ${m.node} |`);
  lines.push(`| PostgreSQL | ${run.postgres.version} |`);
  lines.push(`| pgbench | ${m.pgbench} |`);
  lines.push(`| open files per process (hard limit) | ${m.openFilesHardLimit}; ${m.openFilesRaise} |`);
  lines.push(`| PostgreSQL data directory | ${m.dataFilesystem}; one 8 kB write + fdatasync takes ${fixed(m.fdatasyncMicros, 0)} µs (median of 200) |`);
  lines.push('');
  const s = run.postgres.settings;
  lines.push(
    `PostgreSQL: one throwaway node, durable like production: fsync=${s.fsync}, synchronous_commit=${s.synchronous_commit}, full_page_writes=${s.full_page_writes}, wal_sync_method=${s.wal_sync_method}, shared_buffers=${s.shared_buffers}, max_connections=${s.max_connections}.`,
    `App server: \`node bin/parley.js app-server\` as its own process, ${Object.entries(run.appEnv).map(([k, v]) => `${k}=${v}`).join(', ')}, other settings at their defaults (database pool of ${p.poolSize} connections).`,
    'Load generator, PostgreSQL and the app server all share the machine\'s cores; the CPU tables show who used how much.',
    '',
  );

  if (run.unexpectedExits.length > 0) {
    lines.push('**This run was disturbed**: ' + run.unexpectedExits.join('; ') + '. Figures measured after that are not valid.', '');
  }
  lines.push('### Results against the targets', '', '| what | target | measured | |', '|---|---|---|---|');
  if (run.throughput.ok) {
    const t = run.throughput.value;
    const ratio = t.many.ratePerSecond / t.pgbench.tps;
    lines.push(`| send throughput ÷ pgbench single-row insert (${p.clients} clients, many conversations) | ≥ 0.5 | ${fixed(ratio, 2)} (${int(t.many.ratePerSecond)} / ${int(t.pgbench.tps)} per s) | ${pass(ratio >= 0.5)} |`);
  } else lines.push(`| send throughput ÷ pgbench | ≥ 0.5 | not measured | ${run.throughput.reason} |`);
  if (run.latency.ok) {
    const l = run.latency.value.result;
    lines.push(`| send → receive p99 at half of max throughput (${int(l.achievedRatePerSecond)} sends/s) | ≤ 50 ms | ${ms(l.deliveryMs.p99)} | ${pass(l.deliveryMs.p99 <= 50 && l.deliveriesReceived === l.deliveriesExpected)} |`);
  } else lines.push(`| send → receive p99 at half of max throughput | ≤ 50 ms | not measured | ${run.latency.reason} |`);
  if (run.idle.ok) {
    const i = run.idle.value;
    lines.push(`| RSS of one app server with 20,000 idle authenticated WebSockets | ≤ 512 MiB | ${mib(i.rssAfterBytes)} at ${int(i.opened)} sockets; projected ${mib(i.projectedRssBytes)} at ${int(i.projectedSockets)} | ${pass(i.projectedRssBytes <= 512 * 2 ** 20 && i.opened === i.requested)} (projection) |`);
  } else lines.push(`| RSS with 20,000 idle WebSockets | ≤ 512 MiB | not measured | ${run.idle.reason} |`);
  lines.push('');

  lines.push('### 1. Send throughput against pgbench', '');
  if (run.throughput.ok) {
    const t = run.throughput.value;
    lines.push(
      `Each run: ${p.warmupSeconds} s warm-up (not counted), then ${p.seconds} s measured, ${p.clients} concurrent clients in a closed loop (send, wait for the answer, send again).`,
      `pgbench: \`${t.pgbench.command}\` with the custom script \`${t.pgbench.script.trim().replace(/\n/g, ' ⏎ ')}\` into a table shaped like a message (identity key, conversation, body, timestamp); one transaction per row.`,
      `HTTP: \`POST /v1/conversations/{id}/messages\` with a fresh clientMessageId each, over keep-alive connections (a node:http Agent, one connection per client); a send is counted when its 201 arrives inside the window.`,
      '',
      '| load | rate (per s) | ÷ pgbench | latency p50 / p99 | CPU time per operation | errors |',
      '|---|---|---|---|---|---|',
      `| pgbench single-row insert, ${p.clients} connections | ${int(t.pgbench.tps)} | 1.00 | avg ${ms(t.pgbench.latencyAverageMs)} | ${cpuPerOp(t.cpu.pgbench, t.pgbench.transactions, true)} | ${t.pgbench.failed} failed |`,
      `| HTTP send, ${t.many.clients} clients, each in its own group of 3 | ${int(t.many.ratePerSecond)} | ${fixed(t.many.ratePerSecond / t.pgbench.tps, 2)} | ${ms(t.many.latencyMs.p50)} / ${ms(t.many.latencyMs.p99)} | ${cpuPerOp(t.cpu.many, t.many.sentTotal, false)} | ${errorsText(t.many.errors)} |`,
      `| HTTP send, ${t.hot.clients} clients, all in one hot conversation | ${int(t.hot.ratePerSecond)} | ${fixed(t.hot.ratePerSecond / t.pgbench.tps, 2)} | ${ms(t.hot.latencyMs.p50)} / ${ms(t.hot.latencyMs.p99)} | ${cpuPerOp(t.cpu.hot, t.hot.sentTotal, false)} | ${errorsText(t.hot.errors)} |`,
      '',
      'CPU used during each run, in cores (1.00 = one core busy all the time; the machine has ' + `${m.cores}):`,
      '',
      ...cpuHeader,
      cpuRow('pgbench', t.cpu.pgbench),
      cpuRow('HTTP, many conversations', t.cpu.many),
      cpuRow('HTTP, one hot conversation', t.cpu.hot),
      '',
      othersNote([
        ['pgbench', t.cpu.pgbench, t.attempts.pgbench],
        ['HTTP, many conversations', t.cpu.many, t.attempts.many],
        ['HTTP, one hot conversation', t.cpu.hot, t.attempts.hot],
      ]),
      '',
      `Where PostgreSQL's time goes (pg_stat_statements, execution time only, reset before each run): pgbench's insert makes ${fixed(t.statements.pgbench.callsPerUnit, 1)} statement per row at ${ms(t.statements.pgbench.msPerUnit)} each; ` +
        `one HTTP send in the many-conversation run makes ${fixed(t.statements.many.callsPerUnit, 1)} statements (each a round trip from the app server) taking ${ms(t.statements.many.msPerUnit)} of execution in total:`,
      '',
      '| statement | calls per send | mean | per send |',
      '|---|---|---|---|',
      ...t.statements.many.statements.map((st) => `| \`${st.query.replace(/\|/g, '\\|').replace(/`/g, "'")}\` | ${fixed(st.callsPerUnit, 2)} | ${ms(st.meanMs)} | ${ms(st.msPerUnit)} |`),
      '',
    );
  } else lines.push(`Not measured: ${run.throughput.reason}`, '');

  lines.push('### 2. Send → receive latency over WebSocket', '');
  if (run.latency.ok) {
    const { result: l, cpu, receiversPerConversation, conversations } = run.latency.value;
    lines.push(
      `Open loop at half of the many-conversation rate of section 1: the k-th send is due at t₀ + k / rate whatever happened to the earlier ones, round-robin over ${conversations} group conversations; ` +
        `each has one sender (HTTP) and ${receiversPerConversation} receiving members with one WebSocket each (${l.receiverSockets} sockets). ` +
        `The body carries the send's due time; latency = arrival of the \`message\` frame on a receiver's socket − due time, on the same monotonic clock, so time a send spent queued in the generator counts too. ` +
        `${p.warmupSeconds} s warm-up, then ${fixed(l.windowSeconds, 0)} s measured.`,
      '',
      '| | target rate | achieved | p50 | p90 | p99 | max |',
      '|---|---|---|---|---|---|---|',
      `| send → receive (each delivery) | ${int(l.targetRatePerSecond)}/s | ${int(l.achievedRatePerSecond)}/s | ${latencyCells(l.deliveryMs)} |`,
      `| send → 201 to the sender | | | ${latencyCells(l.ackMs)} |`,
      '',
      `Deliveries: ${int(l.deliveriesReceived)} of ${int(l.deliveriesExpected)} expected; errors: ${errorsText(l.errors)}; sends skipped by the generator's bound: ${l.skipped}. ` +
        `The generator's own event-loop delay (part of every figure above): p50 ${ms(l.generatorLoopDelayMs.p50)}, p99 ${ms(l.generatorLoopDelayMs.p99)}, max ${ms(l.generatorLoopDelayMs.max)}.`,
      '',
      ...cpuHeader,
      cpuRow('latency run (cores)', cpu),
      '',
      othersNote([['latency run', cpu, 1]]),
      '',
    );
  } else lines.push(`Not measured: ${run.latency.reason}`, '');

  lines.push('### 3. Idle authenticated WebSockets on one app server', '');
  if (run.idle.ok) {
    const i = run.idle.value;
    lines.push(
      i.requested < i.projectedSockets
        ? `**${int(i.projectedSockets)} sockets could not be opened on this machine**: the hard limit on open files per process is ${m.openFilesHardLimit} (\`ulimit -Hn\`) and ${m.openFilesRaise}. ` +
          `The app server needs that limit for its sockets plus its own descriptors (listening socket, database pool, pipes), so the run holds ${int(i.requested)} sockets and projects to ${int(i.projectedSockets)}.`
        : `The run holds ${int(i.requested)} sockets.`,
      '',
      `A fresh app server process; its RSS (VmRSS from /proc/<pid>/status, median of 5 samples 1 s apart, after ${fixed(p.settleSeconds, 0)} s to settle) is read before the sockets open and after every one of them has received its \`{type: "status"}\` frame. ` +
        'No garbage collection is forced (the server runs as in production, with no hook for it), so garbage left over from opening may still be counted: the figure is an upper bound. ' +
        `The sockets are held by ${i.clientProcesses} client processes (each is under the same descriptor limit) and authenticated with the tokens of ${i.accounts} accounts (about ${int(i.opened / i.accounts)} sockets per account, like a user with many devices), which saves creating 20,000 sessions and their scrypt hashes; the server does the same work per socket either way (one token lookup, one subscription).`,
      '',
      '| | |',
      '|---|---|',
      `| sockets requested / open / failed | ${int(i.requested)} / ${int(i.opened)} / ${int(i.failed)}${i.failureSamples.length > 0 ? ` (${i.failureSamples.join('; ')})` : ''} |`,
      `| sockets the server counts (parley_websocket_connections) | ${int(i.serverCounted)} |`,
      `| sockets closed by the server while idle | ${int(i.dropped)} |`,
      `| time to open them all | ${fixed(i.openSeconds, 1)} s |`,
      `| app server descriptors open | ${int(i.serverFds)} |`,
      `| RSS before | ${mib(i.rssBeforeBytes)} |`,
      `| RSS with the sockets open (samples) | ${mib(i.rssAfterBytes)} (${i.rssSamplesAfterBytes.map((b) => fixed(b / 2 ** 20, 1)).join(', ')} MiB) |`,
      `| peak RSS while opening (VmHWM) | ${mib(i.peakRssBytes)} |`,
      `| V8 heap in use before / with the sockets open | ${mib(i.heapUsedBeforeBytes)} / ${mib(i.heapUsedAfterBytes)} (${kib((i.heapUsedAfterBytes - i.heapUsedBeforeBytes) / i.opened)} per socket; the rest is native memory outside the JS heap: socket handles, buffers, allocator overhead) |`,
      `| per socket | ${kib(i.bytesPerSocket)} |`,
      `| projected RSS at ${int(i.projectedSockets)} sockets (before + ${int(i.projectedSockets)} × per socket) | ${mib(i.projectedRssBytes)} |`,
      '',
    );
  } else lines.push(`Not measured: ${run.idle.reason}`, '');

  lines.push(blockEnd);
  return lines.join('\n');
}

const defaultPreamble = `# Benchmarks

Figures measured by \`npm run bench\` on the machine described below, against DESIGN.md's targets.
The block below is regenerated on every run; text outside it is kept.

`;

/** Writes the block into `file`, replacing the previous block and keeping everything else. */
export function writeReport(file: string, block: string, markers: { start: string; end: string } = { start: blockStart, end: blockEnd }): void {
  const current = existsSync(file) ? readFileSync(file, 'utf8') : defaultPreamble;
  const start = current.indexOf(markers.start);
  const end = current.indexOf(markers.end);
  let next: string;
  if (start >= 0 && end > start) next = current.slice(0, start) + block + current.slice(end + markers.end.length);
  else next = `${current.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, next.endsWith('\n') ? next : `${next}\n`);
}

/** The markers around the overload block, which `--only overload` rewrites alone. */
export const overloadMarkers = { start: '<!-- bench-overload:start -->', end: '<!-- bench-overload:end -->' };

/** One overload run with what it needs to be read: when, how, on what. */
export interface OverloadRun {
  command: string;
  startedAt: Date;
  runtimeSeconds: number;
  machine: Machine;
  postgresVersion: string;
  appEnv: Record<string, string>;
  poolSize: number;
  warmupSeconds: number;
  /** Where the maximum came from (the closed loop of section 1 of the same run). */
  clients: number;
  overload: Outcome<{ result: OverloadResult; cpu: CpuSplit }>;
  unexpectedExits: string[];
}

const share = (part: number, whole: number): string => (whole > 0 ? `${((100 * part) / whole).toFixed(1)} %` : 'n/a');

function reasonsText(reasons: Record<string, number>): string {
  const entries = Object.entries(reasons).filter(([, n]) => n > 0);
  return entries.length === 0 ? 'none' : entries.map(([reason, n]) => `${int(n)} ${reason}`).join(', ');
}

/** Renders the overload block (markers included). */
export function renderOverloadBlock(run: OverloadRun): string {
  const m = run.machine;
  const lines: string[] = [overloadMarkers.start, '<!-- Generated by `npm run bench` (scripts/bench.ts, scripts/bench/overload.ts); edits inside this block are overwritten. -->', ''];
  lines.push(`### Overload: 2× the maximum, sends first (${run.startedAt.toISOString()})`, '');
  lines.push(
    `Command: \`${run.command}\` (from the repository root), total runtime ${fixed(run.runtimeSeconds, 0)} s. ` +
      `Machine: ${m.cores} cores (${m.cpuModel}), ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${m.kernel}, Node ${m.node}, ${run.postgresVersion.split(' on ')[0]} (durable: fsync and synchronous_commit on). ` +
      `App server: its own process, database pool of ${run.poolSize} connections (so at most ${run.poolSize} database requests run at once and ${run.poolSize * 50} may wait), ${Object.entries(run.appEnv).map(([k, v]) => `${k}=${v}`).join(', ')}; load generator, PostgreSQL and app server share the cores.`,
    '',
  );
  if (run.unexpectedExits.length > 0) lines.push('**This run was disturbed**: ' + run.unexpectedExits.join('; ') + '.', '');
  if (!run.overload.ok) {
    lines.push(`Not measured: ${run.overload.reason}`, '', overloadMarkers.end);
    return lines.join('\n');
  }
  const { result: o, cpu } = run.overload.value;
  const c = o.classes;
  const send = c.send;
  const offeredAll = c.send.offered + c.read.offered + c.typing.offered;
  const shedAll = c.send.shed + c.read.shed + c.typing.shed;
  const deliveredAll = o.deliveriesReceived === o.deliveriesExpected;
  lines.push(
    `The maximum is the closed-loop send rate of this run (${run.clients} clients, many conversations, section 1): **${int(o.maxRatePerSecond)} sends/s**. ` +
      `The open loop then offers ${o.factor} × that, **${int(o.offeredRatePerSecond)} requests/s**, for ${run.warmupSeconds} s of warm-up and ${fixed(o.windowSeconds, 0)} s measured, each request due at t₀ + k / rate whatever happened to the earlier ones: ` +
      `a quarter sends (\`POST /v1/conversations/{id}/messages\`, so sends alone are offered at half the maximum, the rate of the latency target), half reads (\`GET /v1/conversations/{id}/messages?limit=50\`, the newest page, by a member) and a quarter typing frames (\`{type: "typing"}\` on the sender's WebSocket), round-robin over the same group conversations. ` +
      `${o.sockets} WebSockets: each sender's (typing out, refusals back) and each receiver's (messages and typing in). Latency runs from the due time to the answer (HTTP) or to the \`message\` frame on a receiver's socket, so time queued in the generator counts.`,
    '',
    '| what | target | measured | |',
    '|---|---|---|---|',
    `| send → receive p99 of accepted sends, under ${o.factor}× overload | ≤ 50 ms (invariant 9: sends keep their latency target) | ${ms(o.sendDeliveryMs.p99)} | ${pass(o.sendDeliveryMs.p99 <= 50 && deliveredAll)} |`,
    `| sends shed | few, and never while a read or typing waits (the core's invariant) | ${int(send.shed)} of ${int(send.offered)} (${share(send.shed, send.offered)}) | |`,
    `| longest response (any HTTP request) | bounded: 503 with Retry-After rather than a hang | ${ms(o.longestResponseMs)} | |`,
    `| 5xx other than 503 | 0 | ${Object.keys(o.serverErrors).length === 0 ? '0' : errorsText(o.serverErrors)} | ${pass(Object.keys(o.serverErrors).length === 0)} |`,
    '',
    '| class | offered | accepted | shed (503 `overloaded`) | share shed | other answers | accepted: p50 / p99 / max | shed: p50 / p99 / max |',
    '|---|---|---|---|---|---|---|---|',
  );
  const row = (label: string, k: ClassOutcome, http: boolean): string => {
    const others: Record<string, number> = { ...k.otherErrors };
    if (k.unavailable > 0) others['503 storage_unavailable'] = k.unavailable;
    return `| ${label} | ${int(k.offered)} | ${int(k.accepted)} | ${int(k.shed)} | ${share(k.shed, k.offered)} | ${errorsText(others)} | ${http ? `${ms(k.acceptedMs.p50)} / ${ms(k.acceptedMs.p99)} / ${ms(k.acceptedMs.max)}` : 'no answer to time'} | ${http ? `${ms(k.shedMs.p50)} / ${ms(k.shedMs.p99)} / ${ms(k.shedMs.max)}` : 'n/a'} |`;
  };
  lines.push(
    row('send', c.send, true),
    row('read', c.read, true),
    row('typing', c.typing, false),
    `| all | ${int(offeredAll)} | ${int(c.send.accepted + c.read.accepted + c.typing.accepted)} | ${int(shedAll)} | ${share(shedAll, offeredAll)} | | | |`,
    '',
    `Accepted sends: send → 201 p50 ${ms(send.acceptedMs.p50)}, p99 ${ms(send.acceptedMs.p99)}, max ${ms(send.acceptedMs.max)}; send → receive (each delivery) p50 ${ms(o.sendDeliveryMs.p50)}, p90 ${ms(o.sendDeliveryMs.p90)}, p99 ${ms(o.sendDeliveryMs.p99)}, max ${ms(o.sendDeliveryMs.max)}; ` +
      `deliveries ${int(o.deliveriesReceived)} of ${int(o.deliveriesExpected)} expected. ` +
      `Every 503 carried Retry-After: ${c.send.missingRetryAfter + c.read.missingRetryAfter === 0 ? 'yes' : `no, ${c.send.missingRetryAfter + c.read.missingRetryAfter} did not`}. ` +
      `Typing is counted by the refusals that came back (the server answers an accepted typing frame with nothing); the receivers saw ${int(o.typingSeen)} typing events per member against ${int(c.typing.accepted)} accepted. ` +
      `Requests the generator skipped because ${int(overloadInFlightMax)} were outstanding: ${int(o.skipped)}. The generator's own event-loop delay: p50 ${ms(o.generatorLoopDelayMs.p50)}, p99 ${ms(o.generatorLoopDelayMs.p99)}, max ${ms(o.generatorLoopDelayMs.max)}.`,
    '',
    `What the app server counted over the whole run, warm-up included (\`parley_admission_shed_total\`, \`parley_admission_admitted_total\`; an HTTP request is one database request, its work, or two when its session is looked up too — once per data.readMaxLagMs per session and app server): ` +
      `sends admitted ${int(o.server.admitted.send)}, shed ${reasonsText(o.server.shed.send)}; reads admitted ${int(o.server.admitted.read)}, shed ${reasonsText(o.server.shed.read)}; typing admitted ${int(o.server.admitted.typing)}, shed ${reasonsText(o.server.shed.typing)}.`,
    '',
    ...cpuHeader,
    cpuRow('overload run (cores)', cpu),
    '',
    othersNote([['overload run', cpu, 1]]),
    '',
    overloadMarkers.end,
  );
  return lines.join('\n');
}
