// The alert rules: their shape (a zod schema, which is also their TypeScript type), and loading
// rules.yaml with one clear line per problem, each naming the rule and the key. Conditions are data
// (typed comparisons, trends, staleness, combinators) over the metric catalogue of evaluate.ts;
// nothing in a rules file is ever evaluated as code. Docs: docs/monitoring.md.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { ParleyError } from '../errors/errors.ts';
import { formatNames, metricCatalog, metricUsable, placeholderPattern, subjectPlaceholders, trendPlaceholders } from './evaluate.ts';

/** The rules file shipped with Parley. */
export const defaultRulesPath = fileURLToPath(new URL('./rules.yaml', import.meta.url));

/** What one alert instance is about: the cluster (one instance), or one per node, app server or dependency. */
export type Scope = 'cluster' | 'node' | 'appServer' | 'dependency';
/** `critical` pages a person; `warning` and `info` are shown and journaled. */
export type Severity = 'critical' | 'warning' | 'info';
export type CompareOp = '>' | '>=' | '<' | '<=' | '==' | '!=';

/** A condition over one sample (and, for `trend`, the samples before it), for one subject. */
export type Condition =
  /** The metric compared with a constant. */
  | { readonly metric: string; readonly op: CompareOp; readonly value: number | string | boolean | null }
  /** A line fitted through the metric over `windowMs` reaches `threshold` within `crossesWithinMs`. */
  | {
      readonly trend: string;
      readonly windowMs: number;
      readonly threshold: number;
      readonly crossesWithinMs: number;
      /** Fewer points than this in the window never make a trend. */
      readonly minSamples: number;
      /** R² of the fit at least this: a steady climb, not noise. */
      readonly minFit: number;
    }
  /** A timestamp metric is older than `afterMs`, or was never set. */
  | { readonly stale: string; readonly afterMs: number }
  /** Time since a timestamp metric, compared with `ms` (null never holds). */
  | { readonly since: string; readonly op: CompareOp; readonly ms: number }
  /** Time until a timestamp metric (negative once past), compared with `ms` (null never holds). */
  | { readonly until: string; readonly op: CompareOp; readonly ms: number }
  | { readonly all: readonly Condition[] }
  | { readonly any: readonly Condition[] }
  | { readonly not: Condition };

/** One alert rule. */
export interface Rule {
  readonly name: string;
  readonly severity: Severity;
  readonly scope: Scope;
  /** How long the condition must hold, at every evaluation, before pending becomes firing. */
  readonly forMs: number;
  /** How long a firing alert stays firing after its condition stops holding (damps flapping). */
  readonly keepFiringForMs: number;
  readonly when: Condition;
  /** The one-line summary, with `{metric}` or `{metric|format}` placeholders. */
  readonly summary: string;
}

/** A whole rules file. */
export interface RuleSet {
  /** How long a resolved alert stays listed (`parley alerts`) before it is forgotten. */
  readonly keepResolvedMs: number;
  readonly rules: readonly Rule[];
}

const hourMs = 3_600_000;
/** Most rules in one file and most conditions under one combinator: limits, so a typo cannot make evaluation unbounded. */
export const maxRules = 200;
const maxChildren = 32;
const maxDepth = 8;

const conditionKinds = ['metric', 'trend', 'stale', 'since', 'until', 'all', 'any', 'not'] as const;
type ConditionKind = (typeof conditionKinds)[number];

const metricName = z.string().regex(/^[a-z][A-Za-z]*\.[a-z][A-Za-z]*$/, 'must be a metric name like node.lagBytes');
const compareOp = z.enum(['>', '>=', '<', '<=', '==', '!=']);
const durationMs = z.number().int().min(0).max(hourMs);

const branches: Record<ConditionKind, z.ZodType> = {
  metric: z.strictObject({ metric: metricName, op: compareOp, value: z.union([z.number(), z.string(), z.boolean(), z.null()]) }),
  trend: z.strictObject({
    trend: metricName,
    windowMs: z.number().int().min(2000).max(hourMs),
    threshold: z.number(),
    crossesWithinMs: durationMs,
    minSamples: z.number().int().min(3).max(3600).default(10),
    minFit: z.number().min(0).max(1).default(0.8),
  }),
  stale: z.strictObject({ stale: metricName, afterMs: durationMs }),
  since: z.strictObject({ since: metricName, op: compareOp, ms: z.number().int().min(-hourMs * 24).max(hourMs * 24) }),
  until: z.strictObject({ until: metricName, op: compareOp, ms: z.number().int().min(-hourMs * 24).max(hourMs * 24) }),
  all: z.strictObject({ all: z.array(z.lazy(() => conditionSchema)).min(1).max(maxChildren) }),
  any: z.strictObject({ any: z.array(z.lazy(() => conditionSchema)).min(1).max(maxChildren) }),
  not: z.strictObject({ not: z.lazy(() => conditionSchema) }),
};

/**
 * A condition is whichever form its one distinguishing key names. Dispatching on that key, rather
 * than trying every form (a zod union), is what lets an error say "when.all[1].afterMs: expected
 * number" instead of "invalid input".
 */
const conditionSchema: z.ZodType<Condition> = z.unknown().transform((value, ctx): Condition => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    ctx.addIssue({ code: 'custom', message: `must be a mapping with one of ${conditionKinds.join(', ')}` });
    return z.NEVER;
  }
  const kinds = conditionKinds.filter((kind) => kind in value);
  if (kinds.length !== 1) {
    const found = kinds.length === 0 ? `found ${Object.keys(value).join(', ') || 'nothing'}` : `found ${kinds.join(' and ')}`;
    ctx.addIssue({ code: 'custom', message: `must have exactly one of ${conditionKinds.join(', ')} (${found})` });
    return z.NEVER;
  }
  const result = branches[kinds[0]!].safeParse(value);
  if (!result.success) {
    for (const issue of result.error.issues) ctx.addIssue({ code: 'custom', message: describeIssue(issue), path: issue.path as PropertyKey[] });
    return z.NEVER;
  }
  return result.data as Condition;
});

const ruleSchema = z.strictObject({
  name: z.string().regex(/^[A-Z][A-Za-z0-9]*$/, 'must be PascalCase letters and digits (it is also the Prometheus alert name)'),
  severity: z.enum(['critical', 'warning', 'info']),
  scope: z.enum(['cluster', 'node', 'appServer', 'dependency']),
  forMs: durationMs,
  keepFiringForMs: durationMs.default(0),
  when: conditionSchema,
  summary: z.string().min(1).max(300),
});

const ruleSetSchema = z.strictObject({
  keepResolvedMs: durationMs.default(hourMs),
  rules: z.array(ruleSchema).min(1).max(maxRules),
});

/** One zod issue as a phrase; unknown keys are named, as in `parley config check`. */
function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key ${issue.keys.map((key) => `"${key}"`).join(', ')}`;
  return issue.message;
}

/** `when.all[1].afterMs` from a zod path. */
function formatPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const part of path) text += typeof part === 'number' ? `[${part}]` : `${text === '' ? '' : '.'}${String(part)}`;
  return text;
}

/** `rule "LagHigh" (rules[3])` for problems inside a rule, so the reader finds it by name or by position. */
function ruleLabel(raw: unknown, index: number): string {
  const rules = (raw as { rules?: unknown } | null)?.rules;
  const name = Array.isArray(rules) ? (rules[index] as { name?: unknown } | null)?.name : undefined;
  return typeof name === 'string' && name !== '' ? `rule "${name}" (rules[${index}])` : `rules[${index}]`;
}

/** One line per schema problem: `rule "X" (rules[2]): when.metric: …`. */
function schemaProblems(error: z.ZodError, raw: unknown): string[] {
  return error.issues.map((issue) => {
    const path = issue.path as PropertyKey[];
    const message = describeIssue(issue);
    if (path[0] === 'rules' && typeof path[1] === 'number') {
      const rest = formatPath(path.slice(2));
      return `${ruleLabel(raw, path[1])}: ${rest === '' ? '' : `${rest}: `}${message}`;
    }
    return `${formatPath(path) || '(top level)'}: ${message}`;
  });
}

// ---- checks the schema cannot make: names against the metric catalogue, types, placeholders ----

/** Levenshtein distance, for "did you mean" on misspelt metric names. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

function unknownMetric(metric: string, scope: Scope): string {
  const usable = Object.keys(metricCatalog).filter((name) => metricUsable(name, scope));
  const closest = usable.map((name) => ({ name, d: distance(metric, name) })).sort((a, b) => a.d - b.d)[0];
  const known = metricCatalog[metric] !== undefined;
  const why = known ? `belongs to ${metricCatalog[metric]!.scope} rules, not ${scope} rules` : `is not a metric`;
  const hint = closest !== undefined && closest.d <= 3 && !known ? `; did you mean "${closest.name}"?` : '';
  return `"${metric}" ${why}${hint}`;
}

/** Problems of one condition tree, each with its path under `when`. */
function conditionProblems(condition: Condition, scope: Scope, path: string, depth: number): string[] {
  if (depth > maxDepth) return [`${path}: conditions nest deeper than ${maxDepth}`];
  if ('all' in condition || 'any' in condition) {
    const children = 'all' in condition ? condition.all : condition.any;
    const key = 'all' in condition ? 'all' : 'any';
    return children.flatMap((child, i) => conditionProblems(child, scope, `${path}.${key}[${i}]`, depth + 1));
  }
  if ('not' in condition) return conditionProblems(condition.not, scope, `${path}.not`, depth + 1);
  const [key, metric] = 'metric' in condition ? ['metric', condition.metric] : 'trend' in condition ? ['trend', condition.trend] : 'stale' in condition ? ['stale', condition.stale] : 'since' in condition ? ['since', condition.since] : ['until', condition.until];
  if (!metricUsable(metric, scope)) return [`${path}.${key}: ${unknownMetric(metric, scope)}`];
  const spec = metricCatalog[metric]!;
  if (key === 'trend' && spec.type !== 'number') return [`${path}.trend: "${metric}" is a ${spec.type}; a trend needs a number`];
  if ((key === 'stale' || key === 'since' || key === 'until') && spec.type !== 'timestamp') {
    return [`${path}.${key}: "${metric}" is a ${spec.type}; ${key} needs a timestamp metric (one ending in Ms that holds a time)`];
  }
  if (!('metric' in condition)) return [];
  return comparisonProblems(condition, spec, `${path}`);
}

function comparisonProblems(condition: Extract<Condition, { metric: string }>, spec: (typeof metricCatalog)[string], path: string): string[] {
  const { metric, op, value } = condition;
  const ordering = op !== '==' && op !== '!=';
  const numeric = spec.type === 'number' || spec.type === 'timestamp';
  if (ordering && !numeric) return [`${path}.op: "${op}" needs a number, but "${metric}" is a ${spec.type}`];
  if (ordering && typeof value !== 'number') return [`${path}.value: "${op}" needs a number, got ${JSON.stringify(value)}`];
  if (value === null) return [];
  const expected = numeric ? 'number' : spec.type;
  if (typeof value !== expected) return [`${path}.value: "${metric}" is a ${spec.type}, got ${JSON.stringify(value)}`];
  if (typeof value === 'string' && spec.values !== undefined && !spec.values.includes(value)) {
    return [`${path}.value: "${value}" is not a value of "${metric}" (one of ${spec.values.join(', ')})`];
  }
  return [];
}

function hasTrend(condition: Condition): boolean {
  if ('all' in condition) return condition.all.some(hasTrend);
  if ('any' in condition) return condition.any.some(hasTrend);
  if ('not' in condition) return hasTrend(condition.not);
  return 'trend' in condition;
}

/** Problems of a summary template: unknown names, unknown formats, stray braces. */
function summaryProblems(rule: Rule): string[] {
  const problems: string[] = [];
  const allowed = new Set<string>(Object.keys(metricCatalog).filter((name) => metricUsable(name, rule.scope)));
  const subject = subjectPlaceholders[rule.scope];
  if (subject !== null) allowed.add(subject);
  if (hasTrend(rule.when)) for (const name of trendPlaceholders) allowed.add(name);
  for (const match of rule.summary.matchAll(placeholderPattern)) {
    const name = match[1]!.trim();
    const format = match[2]?.trim();
    if (!allowed.has(name)) {
      const hint = name.startsWith('trend.') ? ' (trend.* needs a trend condition)' : Object.values(subjectPlaceholders).includes(name) ? ` (a ${rule.scope} rule has no {${name}})` : '';
      problems.push(`summary: unknown placeholder {${name}}${hint}`);
    }
    if (format !== undefined && !formatNames.includes(format)) problems.push(`summary: unknown format "|${format}" in {${match[0].slice(1, -1)}} (one of ${formatNames.join(', ')})`);
  }
  if (/[{}]/.test(rule.summary.replace(placeholderPattern, ''))) problems.push('summary: unmatched "{" or "}"');
  return problems;
}

/** Every problem of a schema-valid rule set that needs the catalogue to see. */
function semanticProblems(ruleSet: RuleSet): string[] {
  const problems: string[] = [];
  const names = new Map<string, number>();
  ruleSet.rules.forEach((rule, index) => {
    const label = `rule "${rule.name}" (rules[${index}])`;
    const first = names.get(rule.name);
    if (first !== undefined) problems.push(`${label}: name: duplicate of rules[${first}]`);
    else names.set(rule.name, index);
    for (const problem of [...conditionProblems(rule.when, rule.scope, 'when', 1), ...summaryProblems(rule)]) problems.push(`${label}: ${problem}`);
  });
  return problems;
}

/** Validates a parsed rules document. Throws ParleyError('config_invalid') listing every problem, each prefixed by `source`. */
export function parseRules(raw: unknown, source = 'rules.yaml'): RuleSet {
  const result = ruleSetSchema.safeParse(raw);
  const problems = result.success ? semanticProblems(result.data as RuleSet) : schemaProblems(result.error, raw);
  if (problems.length > 0) {
    const lines = problems.map((problem) => `${source}: ${problem}`);
    throw new ParleyError('config_invalid', lines.join('; '), { details: lines });
  }
  return result.data as RuleSet;
}

/** Parses and validates rules from YAML text; a syntax error names its line. */
export function parseRulesText(text: string, source = 'rules.yaml'): RuleSet {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    const where = error instanceof YAMLParseError && error.linePos ? ` line ${error.linePos[0].line}` : '';
    const line = `${source}:${where} not valid YAML: ${(error as Error).message.split('\n')[0]}`;
    throw new ParleyError('config_invalid', line, { details: [line], cause: error });
  }
  return parseRules(raw, source);
}

/** Reads and validates a rules file (the shipped one by default). */
export function loadRules(file: string = defaultRulesPath): RuleSet {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const line = `${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
    throw new ParleyError('config_invalid', line, { details: [line], cause: error });
  }
  return parseRulesText(text, file);
}
