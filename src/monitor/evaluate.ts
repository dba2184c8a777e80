// The alert evaluator: given the last hour of samples, the rules and the previous alert state, says
// which alert instances are pending, firing or resolved at `now`, and which changed. Pure: no I/O,
// no clock, no randomness (time is the `now` argument), so property tests and journal replays drive
// it for as many steps as they like. It also owns the metric catalogue: the only names a rule may
// read, each a small typed function of one sample, so rules stay data and nothing is ever eval'd.
//
// States of one instance (one rule × one subject: a node, an app server, a dependency, or the
// cluster): inactive → pending when the condition first holds; pending → firing once it has held at
// every evaluation for `forMs`; pending → inactive when it stops holding before that; firing →
// resolved when it has not held for `keepFiringForMs`; resolved → pending when it holds again.
// Docs: docs/monitoring.md.
import type { Condition, CompareOp, Rule, RuleSet, Scope, Severity } from './rules.ts';
import type { AppServerSample, NodeSample, Sample } from './samples.ts';
import { nodeRoles, syncStates, walReceiverStatuses } from './samples.ts';

/** A value a metric reads from a sample: null when the sample does not have it. */
export type MetricValue = number | string | boolean | null;

/** What a metric holds; `timestamp` is milliseconds since the epoch, usable by stale/since/until. */
export type MetricType = 'number' | 'string' | 'boolean' | 'timestamp';

/** One entry of the metric catalogue. */
export interface MetricSpec {
  /** `cluster` metrics may be read by rules of every scope; the others only by rules of their scope. */
  readonly scope: Scope;
  readonly type: MetricType;
  /** For string metrics with a closed set of values: that set, so a typo in a rule is an error. */
  readonly values?: readonly string[];
  /** Reads the metric for one subject (a node name, server name, dependency, or null for the cluster). */
  readonly read: (sample: Sample | undefined, subject: string | null) => MetricValue;
}

/** Most instances one rule may have at once; subjects past it (sorted by name) are not evaluated. */
export const maxSubjectsPerRule = 64;

function nodeOf(sample: Sample | undefined, subject: string | null): NodeSample | undefined {
  return sample?.nodes.find((node) => node.name === subject);
}

function serverOf(sample: Sample | undefined, subject: string | null): AppServerSample | undefined {
  return sample?.appServers.find((server) => server.name === subject);
}

function nodeField<K extends keyof NodeSample>(key: K): (sample: Sample | undefined, subject: string | null) => MetricValue {
  return (sample, subject) => (nodeOf(sample, subject)?.[key] ?? null) as MetricValue;
}

function ratio(part: number | null | undefined, whole: number | null | undefined): number | null {
  if (part === null || part === undefined || whole === null || whole === undefined || whole <= 0) return null;
  return part / whole;
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

function totalRequestsPerSec(sample: Sample | undefined): number {
  return sum((sample?.appServers ?? []).map((server) => server.requestsPerSec));
}

/** Errors per second of one dependency across all app servers and causes. */
function dependencyErrorsPerSec(sample: Sample | undefined, dependency: string | null): number {
  return sum((sample?.appServers ?? []).flatMap((server) => server.errors.filter((e) => e.dependency === dependency).map((e) => e.perSec)));
}

/**
 * Errors over requests, at most 1. Errors with no requests at all count as 1: a dependency failing
 * every health probe is down even when no user is asking.
 */
function errorRatio(errorsPerSec: number, requestsPerSec: number): number {
  if (requestsPerSec <= 0) return errorsPerSec > 0 ? 1 : 0;
  return Math.min(1, errorsPerSec / requestsPerSec);
}

/** `storage_unavailable 12/s, overloaded 1.5/s`: the causes behind one dependency's errors, largest first. */
function dependencyCauses(sample: Sample | undefined, dependency: string | null): string {
  const byCause = new Map<string, number>();
  for (const server of sample?.appServers ?? []) {
    for (const error of server.errors) {
      if (error.dependency === dependency && error.perSec > 0) byCause.set(error.cause, (byCause.get(error.cause) ?? 0) + error.perSec);
    }
  }
  const entries = [...byCause.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return entries.length === 0 ? 'none' : entries.map(([cause, perSec]) => `${cause} ${formatNumber(perSec)}/s`).join(', ');
}

function dependencyServers(sample: Sample | undefined, dependency: string | null): string {
  const names = (sample?.appServers ?? []).filter((server) => server.errors.some((e) => e.dependency === dependency && e.perSec > 0)).map((s) => s.name);
  return names.length === 0 ? 'none' : names.sort().join(', ');
}

/** `node2 (WAL receiver streaming, quorum), node3 (unreachable)`: every non-primary node, for summaries. */
function standbySummary(sample: Sample | undefined): string {
  const phrases = (sample?.nodes ?? [])
    .filter((node) => node.role !== 'primary')
    .map((node) => {
      if (!node.reachable) return `${node.name} (unreachable)`;
      const sync = node.syncState ?? 'unknown to the primary';
      return `${node.name} (WAL receiver ${node.walReceiverStatus ?? 'absent'}, ${sync})`;
    });
  return phrases.length === 0 ? 'no standbys' : phrases.join(', ');
}

/**
 * Every metric a rule may read. Adding one is adding a line here (and to docs/monitoring.md); the
 * rules file is checked against this table when it loads.
 */
export const metricCatalog: Readonly<Record<string, MetricSpec>> = {
  'sample.timestampMs': { scope: 'cluster', type: 'timestamp', read: (s) => s?.timestampMs ?? null },
  'cluster.nodes': { scope: 'cluster', type: 'number', read: (s) => s?.nodes.length ?? null },
  'cluster.primaries': {
    scope: 'cluster',
    type: 'number',
    read: (s) => (s === undefined ? null : s.nodes.filter((n) => n.reachable && n.role === 'primary').length),
  },
  'cluster.standbys': {
    scope: 'cluster',
    type: 'number',
    read: (s) => (s === undefined ? null : s.nodes.filter((n) => n.reachable && n.role === 'standby').length),
  },
  'cluster.syncStandbys': {
    scope: 'cluster',
    type: 'number',
    read: (s) => (s === undefined ? null : s.nodes.filter((n) => n.syncState === 'sync' || n.syncState === 'quorum').length),
  },
  'cluster.standbySummary': { scope: 'cluster', type: 'string', read: (s) => standbySummary(s) },
  'primary.name': { scope: 'cluster', type: 'string', read: (s) => s?.primary?.name ?? null },
  'primary.connections': { scope: 'cluster', type: 'number', read: (s) => s?.primary?.connections ?? null },
  'primary.active': { scope: 'cluster', type: 'number', read: (s) => s?.primary?.active ?? null },
  'primary.waiting': { scope: 'cluster', type: 'number', read: (s) => s?.primary?.waiting ?? null },
  'primary.maxConnections': { scope: 'cluster', type: 'number', read: (s) => s?.primary?.maxConnections ?? null },
  'primary.commitsPerSec': { scope: 'cluster', type: 'number', read: (s) => s?.primary?.commitsPerSec ?? null },
  'primary.busySessions': {
    scope: 'cluster',
    type: 'number',
    read: (s) => (s?.primary ? s.primary.active + s.primary.waiting : null),
  },
  'primary.busyRatio': {
    scope: 'cluster',
    type: 'number',
    read: (s) => (s?.primary ? ratio(s.primary.active + s.primary.waiting, s.primary.maxConnections) : null),
  },
  'primary.connectionsRatio': {
    scope: 'cluster',
    type: 'number',
    read: (s) => (s?.primary ? ratio(s.primary.connections, s.primary.maxConnections) : null),
  },
  'app.requestsPerSec': { scope: 'cluster', type: 'number', read: (s) => (s === undefined ? null : totalRequestsPerSec(s)) },
  'lease.holder': { scope: 'cluster', type: 'string', read: (s) => s?.lease?.holder ?? null },
  'lease.expiresAtMs': { scope: 'cluster', type: 'timestamp', read: (s) => s?.lease?.expiresAtMs ?? null },
  'failover.inProgress': { scope: 'cluster', type: 'boolean', read: (s) => s?.failover?.inProgress ?? null },
  'failover.startedAtMs': { scope: 'cluster', type: 'timestamp', read: (s) => s?.failover?.startedAtMs ?? null },
  'maintenance.on': { scope: 'cluster', type: 'boolean', read: (s) => s?.maintenance?.on ?? null },
  'maintenance.expiresAtMs': { scope: 'cluster', type: 'timestamp', read: (s) => s?.maintenance?.expiresAtMs ?? null },
  'maintenance.reason': { scope: 'cluster', type: 'string', read: (s) => s?.maintenance?.reason ?? null },
  'maintenance.node': { scope: 'cluster', type: 'string', read: (s) => (s?.maintenance ? (s.maintenance.node ?? 'the whole cluster') : null) },

  'node.name': { scope: 'node', type: 'string', read: nodeField('name') },
  'node.role': { scope: 'node', type: 'string', values: nodeRoles, read: nodeField('role') },
  'node.reachable': { scope: 'node', type: 'boolean', read: nodeField('reachable') },
  'node.agentLastSeenMs': { scope: 'node', type: 'timestamp', read: nodeField('agentLastSeenMs') },
  'node.walReceiverStatus': { scope: 'node', type: 'string', values: walReceiverStatuses, read: nodeField('walReceiverStatus') },
  'node.lastMsgReceiptMs': { scope: 'node', type: 'timestamp', read: nodeField('lastMsgReceiptMs') },
  'node.sentLsn': { scope: 'node', type: 'number', read: nodeField('sentLsn') },
  'node.writeLsn': { scope: 'node', type: 'number', read: nodeField('writeLsn') },
  'node.flushLsn': { scope: 'node', type: 'number', read: nodeField('flushLsn') },
  'node.replayLsn': { scope: 'node', type: 'number', read: nodeField('replayLsn') },
  'node.lagBytes': { scope: 'node', type: 'number', read: nodeField('lagBytes') },
  'node.lagSeconds': { scope: 'node', type: 'number', read: nodeField('lagSeconds') },
  'node.syncState': { scope: 'node', type: 'string', values: syncStates, read: nodeField('syncState') },
  'node.inReadPool': { scope: 'node', type: 'boolean', read: nodeField('inReadPool') },
  'node.candidate': { scope: 'node', type: 'boolean', read: nodeField('candidate') },
  'node.diskFreeBytes': { scope: 'node', type: 'number', read: nodeField('diskFreeBytes') },
  'node.diskTotalBytes': { scope: 'node', type: 'number', read: nodeField('diskTotalBytes') },
  'node.diskFreeRatio': {
    scope: 'node',
    type: 'number',
    read: (s, subject) => {
      const node = nodeOf(s, subject);
      return node ? ratio(node.diskFreeBytes, node.diskTotalBytes) : null;
    },
  },
  'node.isLeaseHolder': {
    scope: 'node',
    type: 'boolean',
    read: (s, subject) => (nodeOf(s, subject) && s?.lease ? s.lease.holder === subject : null),
  },

  'server.name': { scope: 'appServer', type: 'string', read: (s, subject) => serverOf(s, subject)?.name ?? null },
  'server.lastSeenMs': { scope: 'appServer', type: 'timestamp', read: (s, subject) => serverOf(s, subject)?.lastSeenMs ?? null },
  'server.requestsPerSec': { scope: 'appServer', type: 'number', read: (s, subject) => serverOf(s, subject)?.requestsPerSec ?? null },
  'server.errorsPerSec': {
    scope: 'appServer',
    type: 'number',
    read: (s, subject) => {
      const server = serverOf(s, subject);
      return server ? sum(server.errors.map((e) => e.perSec)) : null;
    },
  },
  'server.errorRatio': {
    scope: 'appServer',
    type: 'number',
    read: (s, subject) => {
      const server = serverOf(s, subject);
      return server ? errorRatio(sum(server.errors.map((e) => e.perSec)), server.requestsPerSec) : null;
    },
  },

  'dependency.name': { scope: 'dependency', type: 'string', read: (_s, subject) => subject },
  'dependency.errorsPerSec': { scope: 'dependency', type: 'number', read: (s, subject) => (s === undefined ? null : dependencyErrorsPerSec(s, subject)) },
  'dependency.errorRatio': {
    scope: 'dependency',
    type: 'number',
    read: (s, subject) => (s === undefined ? null : errorRatio(dependencyErrorsPerSec(s, subject), totalRequestsPerSec(s))),
  },
  'dependency.causes': { scope: 'dependency', type: 'string', read: (s, subject) => dependencyCauses(s, subject) },
  'dependency.servers': { scope: 'dependency', type: 'string', read: (s, subject) => dependencyServers(s, subject) },
};

/** The placeholder naming an instance's subject in a summary, per scope: `{node}`, `{server}`, `{dependency}`. */
export const subjectPlaceholders: Readonly<Record<Scope, string | null>> = {
  cluster: null,
  node: 'node',
  appServer: 'server',
  dependency: 'dependency',
};

/** Facts a trend condition adds for summaries, readable as `{trend.perSecond|bytes}` and so on. */
export const trendPlaceholders: readonly string[] = ['trend.perSecond', 'trend.crossesInMs', 'trend.threshold'];

/**
 * How a placeholder's value is shown: `{node.lagBytes|bytes}` → `16.0 MiB`; `seconds` and `ms` →
 * `0.4 s`, `4 min 5 s`; `age` (of a timestamp) → `7.5 s ago`; `elapsed` → `7.5 s`; `in` →
 * `in 4 min` or `2 min ago`; `time` → `14:02:03Z`; `pct` (of a ratio) → `85%`; `rate` → `3.5/s`.
 * Without a format, numbers get two decimals at most, booleans yes/no; a missing value reads
 * `unknown` (`never` for age, elapsed and in).
 */
export const formatNames: readonly string[] = ['bytes', 'seconds', 'ms', 'age', 'elapsed', 'in', 'time', 'pct', 'rate'];

/** Whether a rule of `scope` may read `metric`. */
export function metricUsable(metric: string, scope: Scope): boolean {
  const spec = metricCatalog[metric];
  return spec !== undefined && (spec.scope === 'cluster' || spec.scope === scope);
}

// ---- formatting (summaries are read by people at 3 a.m.: units always, few digits) ----

/** `3`, `2.5`, `0.33`: at most two decimals, no trailing zeros. */
export function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(2)));
}

/** `512 B`, `40.0 KiB`, `16.0 MiB`, `1.2 GiB`. */
export function formatBytes(bytes: number): string {
  const sign = bytes < 0 ? '-' : '';
  const size = Math.abs(bytes);
  if (size < 1024) return `${sign}${Math.round(size)} B`;
  if (size < 1024 ** 2) return `${sign}${(size / 1024).toFixed(1)} KiB`;
  if (size < 1024 ** 3) return `${sign}${(size / 1024 ** 2).toFixed(1)} MiB`;
  return `${sign}${(size / 1024 ** 3).toFixed(1)} GiB`;
}

/** `850 ms`, `7.5 s`, `42 s`, `4 min 5 s`, `1 h 2 min`. */
export function formatDurationMs(durationMs: number): string {
  const ms = Math.max(0, durationMs);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`;
  const totalSeconds = Math.round(ms / 1000);
  if (ms < 3_600_000) {
    const seconds = totalSeconds % 60;
    return `${Math.floor(totalSeconds / 60)} min${seconds === 0 ? '' : ` ${seconds} s`}`;
  }
  const minutes = Math.floor(totalSeconds / 60) % 60;
  return `${Math.floor(totalSeconds / 3600)} h${minutes === 0 ? '' : ` ${minutes} min`}`;
}

function formatValue(value: MetricValue, format: string | undefined, now: number): string {
  if (value === null) return format === 'age' || format === 'elapsed' || format === 'in' ? 'never' : 'unknown';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string') return value;
  // A corrupt reading must not throw out of the evaluator (new Date(NaN).toISOString() would).
  if (!Number.isFinite(value) || Math.abs(value) > 8.64e15) return 'unknown';
  switch (format) {
    case 'bytes':
      return formatBytes(value);
    case 'seconds':
      return value < 1 ? `${value.toFixed(1)} s` : formatDurationMs(value * 1000);
    case 'ms':
      return formatDurationMs(value);
    case 'age':
      return `${formatDurationMs(now - value)} ago`;
    case 'elapsed':
      return formatDurationMs(now - value);
    case 'in':
      return value >= now ? `in ${formatDurationMs(value - now)}` : `${formatDurationMs(now - value)} ago`;
    case 'time':
      return `${new Date(value).toISOString().slice(11, 19)}Z`;
    case 'pct':
      return `${Math.round(value * 100)}%`;
    case 'rate':
      return `${formatNumber(value)}/s`;
    default:
      return formatNumber(value);
  }
}

/** `{name}` or `{name|format}` in a summary template. */
export const placeholderPattern = /\{([^{}|]+)(?:\|([^{}]+))?\}/g;

/** The summary line of one instance: every placeholder replaced by its value now. */
function renderSummary(template: string, facts: ReadonlyMap<string, MetricValue>, sample: Sample | undefined, subject: string | null, scope: Scope, now: number): string {
  return template.replace(placeholderPattern, (_match, name: string, format: string | undefined) => {
    const key = name.trim();
    let value: MetricValue;
    if (key === subjectPlaceholders[scope]) value = subject;
    else if (facts.has(key)) value = facts.get(key) ?? null;
    else value = metricCatalog[key]?.read(sample, subject) ?? null;
    return formatValue(value, format?.trim(), now);
  });
}

// ---- conditions ----

/** What one evaluation of a condition sees. Facts collect what trend conditions found, for the summary. */
interface EvalContext {
  readonly history: readonly Sample[];
  /** Index of the newest sample at or before `now` in `history`, or -1. */
  readonly currentIndex: number;
  readonly subject: string | null;
  readonly now: number;
  readonly facts: Map<string, MetricValue>;
}

function currentSample(ctx: EvalContext): Sample | undefined {
  return ctx.currentIndex >= 0 ? ctx.history[ctx.currentIndex] : undefined;
}

function readMetric(metric: string, ctx: EvalContext): MetricValue {
  return metricCatalog[metric]?.read(currentSample(ctx), ctx.subject) ?? null;
}

/**
 * Compares a metric with a constant. Unknown (null) never passes an ordering comparison, so a value
 * the sampler could not read cannot raise a level alert by itself (the staleness rules cover that);
 * `==`/`!=` compare exactly, null included.
 */
export function compare(left: MetricValue, op: CompareOp, right: MetricValue): boolean {
  switch (op) {
    case '==':
      return left === right;
    case '!=':
      return left !== right;
    default:
      if (typeof left !== 'number' || typeof right !== 'number') return false;
      if (op === '>') return left > right;
      if (op === '>=') return left >= right;
      if (op === '<') return left < right;
      return left <= right;
  }
}

/** A least-squares line through (time, value) points: value at `now`, slope per second, and R². */
export interface TrendFit {
  readonly valueAtNow: number;
  readonly perSecond: number;
  readonly fit: number;
  readonly samples: number;
}

/**
 * Fits a line through the points (times in ms). R² says how much of the movement the line explains:
 * a steady climb is near 1, noise around a level near 0, which is what keeps the trend rule quiet
 * on a jittery lag that is going nowhere.
 */
export function fitTrend(points: readonly { readonly atMs: number; readonly value: number }[], now: number): TrendFit | null {
  const n = points.length;
  if (n < 2) return null;
  // Seconds relative to now keep the sums small enough for doubles whatever the epoch.
  const xs = points.map((p) => (p.atMs - now) / 1000);
  const ys = points.map((p) => p.value);
  const meanX = sum(xs) / n;
  const meanY = sum(ys) / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i += 1) {
    const dx = xs[i]! - meanX;
    const dy = ys[i]! - meanY;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  if (sxx === 0) return null;
  const slope = sxy / sxx;
  const fit = syy === 0 ? 0 : (slope * slope * sxx) / syy;
  return { valueAtNow: meanY - slope * meanX, perSecond: slope, fit, samples: n };
}

/** The points of a numeric metric for one subject over the window ending at the current sample. */
function windowPoints(metric: string, windowMs: number, ctx: EvalContext): { atMs: number; value: number }[] {
  const spec = metricCatalog[metric];
  const points: { atMs: number; value: number }[] = [];
  if (spec === undefined) return points;
  for (let i = ctx.currentIndex; i >= 0; i -= 1) {
    const sample = ctx.history[i]!;
    if (sample.timestampMs <= ctx.now - windowMs) break;
    const value = spec.read(sample, ctx.subject);
    if (typeof value === 'number') points.push({ atMs: sample.timestampMs, value });
  }
  return points.reverse();
}

function checkTrend(condition: Extract<Condition, { trend: string }>, ctx: EvalContext): boolean {
  const trend = fitTrend(windowPoints(condition.trend, condition.windowMs, ctx), ctx.now);
  ctx.facts.set('trend.threshold', condition.threshold);
  if (trend === null || trend.samples < condition.minSamples) return false;
  ctx.facts.set('trend.perSecond', trend.perSecond);
  const crossesInMs = trend.perSecond > 0 ? Math.max(0, ((condition.threshold - trend.valueAtNow) / trend.perSecond) * 1000) : null;
  ctx.facts.set('trend.crossesInMs', crossesInMs);
  return trend.perSecond > 0 && trend.fit >= condition.minFit && crossesInMs !== null && crossesInMs <= condition.crossesWithinMs;
}

/** Whether a condition holds for one subject now. Children are all evaluated (no short cut) so trend facts are always there for the summary. */
function check(condition: Condition, ctx: EvalContext): boolean {
  if ('all' in condition) return condition.all.map((child) => check(child, ctx)).every(Boolean);
  if ('any' in condition) return condition.any.map((child) => check(child, ctx)).some(Boolean);
  if ('not' in condition) return !check(condition.not, ctx);
  if ('metric' in condition) return compare(readMetric(condition.metric, ctx), condition.op, condition.value);
  if ('trend' in condition) return checkTrend(condition, ctx);
  if ('stale' in condition) {
    // Never seen counts as stale: a component that has not reported since the ops process started is not reporting.
    const seen = readMetric(condition.stale, ctx);
    return typeof seen !== 'number' || ctx.now - seen > condition.afterMs;
  }
  if ('since' in condition) {
    const at = readMetric(condition.since, ctx);
    return typeof at === 'number' && compare(ctx.now - at, condition.op, condition.ms);
  }
  const at = readMetric(condition.until, ctx);
  return typeof at === 'number' && compare(at - ctx.now, condition.op, condition.ms);
}

// ---- alert state ----

/** Where one alert instance stands. `inactive` instances are not kept; it appears only in transitions. */
export type AlertStatus = 'inactive' | 'pending' | 'firing' | 'resolved';

/** One alert instance: one rule about one subject. */
export interface Alert {
  /** Stable fingerprint of rule name and subject: the same across evaluations, restarts and episodes. */
  readonly id: string;
  /** The rule's name. */
  readonly name: string;
  readonly severity: Severity;
  readonly scope: Scope;
  /** What the alert is about: the node, app server or dependency (per `scope`); null for the cluster. */
  readonly node: string | null;
  readonly status: Exclude<AlertStatus, 'inactive'>;
  /** One line a person understands, with the values of the last evaluation that held. */
  readonly summary: string;
  /** When the condition began to hold in this episode (the pending start). */
  readonly activeAtMs: number;
  /** When it fired; null while pending. */
  readonly startsAtMs: number | null;
  /** When it resolved; null until then. */
  readonly endsAtMs: number | null;
  /** The last evaluation at which the condition held. */
  readonly lastHeldAtMs: number;
}

/** Every alert instance that is pending, firing or recently resolved, by id. Plain data: store it, send it, replay from it. */
export interface AlertState {
  readonly alerts: Readonly<Record<string, Alert>>;
}

/**
 * One change of one instance: what the journal records and alerting acts on. `alert` is the
 * instance after the change, or, for a change to `inactive` (pending that stopped holding), as it was.
 */
export interface Transition {
  readonly atMs: number;
  readonly from: AlertStatus;
  readonly to: AlertStatus;
  readonly alert: Alert;
}

/** The state before the first evaluation. */
export function emptyAlertState(): AlertState {
  return { alerts: {} };
}

/** FNV-1a, 64 bits, as 16 hex digits: short, stable across processes and versions, no dependency. */
export function alertId(ruleName: string, subject: string | null): string {
  const text = `${ruleName}\u0000${subject ?? ''}`;
  let hash = 0xcbf29ce484222325n;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= BigInt(text.charCodeAt(i));
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, '0');
}

/** The subjects a rule fans out to in a sample, sorted, at most `maxSubjectsPerRule`. */
export function subjectsOf(scope: Scope, sample: Sample | undefined): (string | null)[] {
  if (scope === 'cluster') return [null];
  let names: string[];
  if (sample === undefined) names = [];
  else if (scope === 'node') names = sample.nodes.map((node) => node.name);
  else if (scope === 'appServer') names = sample.appServers.map((server) => server.name);
  else names = sample.appServers.flatMap((server) => server.errors.map((error) => error.dependency));
  return [...new Set(names)].sort().slice(0, maxSubjectsPerRule);
}

/** Index of the newest sample taken at or before `now` (history is oldest first), or -1. */
function currentIndexOf(history: readonly Sample[], now: number): number {
  for (let i = history.length - 1; i >= 0; i -= 1) {
    if (history[i]!.timestampMs <= now) return i;
  }
  return -1;
}

/** The next state of one instance, given whether its condition holds now. Null means inactive (not kept). */
function step(previous: Alert | undefined, rule: Rule, subject: string | null, holds: boolean, summary: () => string, now: number): Alert | null {
  if (holds) {
    if (previous === undefined || previous.status === 'resolved') {
      // A new episode: `for` counts from now, whatever happened in earlier episodes.
      const pending: Alert = {
        id: alertId(rule.name, subject),
        name: rule.name,
        severity: rule.severity,
        scope: rule.scope,
        node: subject,
        status: 'pending',
        summary: summary(),
        activeAtMs: now,
        startsAtMs: null,
        endsAtMs: null,
        lastHeldAtMs: now,
      };
      return rule.forMs === 0 ? { ...pending, status: 'firing', startsAtMs: now } : pending;
    }
    const held = { ...previous, severity: rule.severity, summary: summary(), lastHeldAtMs: now };
    if (previous.status === 'pending' && now - previous.activeAtMs >= rule.forMs) return { ...held, status: 'firing', startsAtMs: now };
    return held;
  }
  if (previous === undefined || previous.status === 'pending') return null;
  if (previous.status === 'firing') {
    if (now - previous.lastHeldAtMs < rule.keepFiringForMs) return previous;
    return { ...previous, status: 'resolved', endsAtMs: now };
  }
  return previous;
}

/**
 * Evaluates every rule against the samples at `now`. `history` is oldest first (the last hour); the
 * newest sample at or before `now` is the current one, older ones feed trend conditions. Returns the
 * new state (the old one is not changed) and the transitions in rule order, then subject order.
 */
export function evaluate(history: readonly Sample[], rules: RuleSet, state: AlertState, now: number): { state: AlertState; transitions: Transition[] } {
  const currentIndex = currentIndexOf(history, now);
  const sample = currentIndex >= 0 ? history[currentIndex] : undefined;
  const next: Record<string, Alert> = {};
  const transitions: Transition[] = [];
  const seen = new Set<string>();

  const record = (id: string, previous: Alert | undefined, after: Alert | null): void => {
    seen.add(id);
    if (after !== null) next[id] = after;
    const from: AlertStatus = previous?.status ?? 'inactive';
    const to: AlertStatus = after?.status ?? 'inactive';
    // A pending instance that stops holding leaves the state; its transition still carries what it was.
    if (from !== to) transitions.push({ atMs: now, from, to, alert: after ?? previous! });
  };

  for (const rule of rules.rules) {
    const present = subjectsOf(rule.scope, sample);
    const subjects = new Set(present);
    // Instances whose subject left the sample (a dependency that stopped erroring) are evaluated as not holding.
    for (const alert of Object.values(state.alerts)) if (alert.name === rule.name) subjects.add(alert.node);
    for (const subject of [...subjects].sort(compareSubjects)) {
      const id = alertId(rule.name, subject);
      const ctx: EvalContext = { history, currentIndex, subject, now, facts: new Map() };
      const holds = present.includes(subject) && check(rule.when, ctx);
      const summary = (): string => renderSummary(rule.summary, ctx.facts, sample, subject, rule.scope, now);
      record(id, state.alerts[id], step(state.alerts[id], rule, subject, holds, summary, now));
    }
  }

  // Instances of rules no longer in the rule set end now: firing ones resolve, pending ones vanish.
  for (const alert of Object.values(state.alerts)) {
    if (seen.has(alert.id)) continue;
    const after = alert.status === 'firing' ? { ...alert, status: 'resolved' as const, endsAtMs: now } : alert.status === 'resolved' ? alert : null;
    record(alert.id, alert, after);
  }

  // Resolved instances are kept for `parley alerts` for keepResolvedMs, then forgotten.
  for (const [id, alert] of Object.entries(next)) {
    if (alert.status === 'resolved' && alert.endsAtMs !== null && now - alert.endsAtMs > rules.keepResolvedMs) delete next[id];
  }
  return { state: { alerts: next }, transitions };
}

function compareSubjects(a: string | null, b: string | null): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  return a < b ? -1 : 1;
}
