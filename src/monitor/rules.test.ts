// Proves the rules file loads and that a bad one is refused with one clear line per problem, each
// naming the file, the rule (by name and position) and the key, the way `parley config check` does.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isParleyError } from '../errors/errors.ts';
import { metricCatalog } from './evaluate.ts';
import { loadRules, parseRules, parseRulesText } from './rules.ts';

/** The problems a rules text is refused with (fails the test if it is accepted). */
function problemsOf(text: string): string[] {
  try {
    parseRulesText(text);
  } catch (error) {
    assert.ok(isParleyError(error), `not a ParleyError: ${String(error)}`);
    assert.equal(error.code, 'config_invalid');
    assert.ok(error.details && error.details.length > 0);
    return [...error.details];
  }
  assert.fail(`accepted:\n${text}`);
}

/** A one-rule file around a `when` and optional extra keys, in YAML flow style. */
function oneRule(when: string, extra = '', summary = "'{node} x'"): string {
  return `rules:\n  - name: LagHigh\n    severity: warning\n    scope: node\n    forMs: 1000\n${extra}    when: ${when}\n    summary: ${summary}\n`;
}

test('the shipped rules.yaml loads, with every rule issue 7 asks for', () => {
  // Proves the shipped file is valid and complete: each named rule of issue 7's point 3 is there.
  const rules = loadRules();
  const names = rules.rules.map((rule) => rule.name);
  for (const name of [
    'ReplicationStopped',
    'ReplicationLagBytesHigh',
    'ReplicationLagSecondsHigh',
    'ReplicationLagGrowing',
    'NoSynchronousStandby',
    'StandbyOutOfReadPool',
    'StandbyNotCandidate',
    'FailoverTooLong',
    'MaintenanceExpiringSoon',
    'MaintenanceExpired',
    'DependencyErrorRate',
    'PrimarySaturated',
    'DiskNearlyFull',
    'AgentNotReporting',
    'AppServerNotReporting',
  ]) {
    assert.ok(names.includes(name), `missing ${name}`);
  }
  assert.equal(new Set(names).size, names.length);
  assert.ok(rules.rules.every((rule) => rule.summary.length > 0 && !rule.summary.includes('\n')), 'summaries are one line');
});

test('each kind of mistake is refused with a line naming the rule and the key', () => {
  // Proves error messages are actionable: file, rule name and index, dotted key path, and what was wrong.
  const cases: { text: string; expect: string }[] = [
    {
      text: oneRule("{ metric: node.lagByte, op: '>', value: 1 }"),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): when.metric: "node.lagByte" is not a metric; did you mean "node.lagBytes"?',
    },
    {
      text: oneRule('{ stale: server.lastSeenMs, afterMs: 5000 }'),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): when.stale: "server.lastSeenMs" belongs to appServer rules, not node rules',
    },
    {
      text: oneRule("{ any: [ { stale: node.agentLastSeenMs, afterMs: '5s' } ] }"),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): when.any[0].afterMs: Invalid input: expected number, received string',
    },
    {
      text: oneRule("{ metric: node.lagBytes, op: '>', value: 1, stale: node.agentLastSeenMs }"),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): when: must have exactly one of metric, trend, stale, since, until, all, any, not (found metric and stale)',
    },
    {
      text: oneRule('{ trend: node.lagBytes, windowMs: 30000, treshold: 5, crossesWithinMs: 60000 }'),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): when: unknown key "treshold"',
    },
    {
      text: oneRule("{ metric: node.walReceiverStatus, op: '==', value: streamin }"),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): when.value: "streamin" is not a value of "node.walReceiverStatus" (one of stopped, starting, streaming, waiting, restarting, stopping)',
    },
    {
      text: oneRule("{ metric: node.role, op: '>', value: 1 }"),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): when.op: ">" needs a number, but "node.role" is a string',
    },
    {
      text: oneRule("{ metric: node.reachable, op: '==', value: 'no' }"),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): when.value: "node.reachable" is a boolean, got "no"',
    },
    {
      text: oneRule('{ stale: node.lagBytes, afterMs: 1000 }'),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): when.stale: "node.lagBytes" is a number; stale needs a timestamp metric (one ending in Ms that holds a time)',
    },
    {
      text: oneRule("{ metric: node.lagBytes, op: '>', value: 1 }", '', "'{node.lagByte} behind'"),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): summary: unknown placeholder {node.lagByte}',
    },
    {
      text: oneRule("{ metric: node.lagBytes, op: '>', value: 1 }", '', "'{node} {trend.perSecond}'"),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): summary: unknown placeholder {trend.perSecond} (trend.* needs a trend condition)',
    },
    {
      text: oneRule("{ metric: node.lagBytes, op: '>', value: 1 }", '', "'{node.lagBytes|megabytes}'"),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): summary: unknown format "|megabytes" in {node.lagBytes|megabytes} (one of bytes, seconds, ms, age, elapsed, in, time, pct, rate)',
    },
    {
      text: oneRule("{ metric: node.lagBytes, op: '>', value: 1 }", '', "'{node} lag {node.lagBytes'"),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): summary: unmatched "{" or "}"',
    },
    {
      text: oneRule("{ metric: node.lagBytes, op: '>', value: 1 }", '    for: 5s\n'),
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): unknown key "for"',
    },
    {
      text: 'rules:\n  - name: LagHigh\n    severity: page\n    scope: node\n    forMs: 1000\n    when: { metric: node.lagBytes, op: ">", value: 1 }\n    summary: x\n',
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): severity: Invalid option: expected one of "critical"|"warning"|"info"',
    },
    {
      text: 'rules:\n  - name: lag_high\n    severity: info\n    scope: node\n    when: { metric: node.lagBytes, op: ">", value: 1 }\n    summary: x\n',
      expect: 'rules.yaml: rule "lag_high" (rules[0]): name: must be PascalCase letters and digits (it is also the Prometheus alert name)',
    },
    {
      text: 'rules:\n  - name: LagHigh\n    severity: info\n    scope: node\n    when: { metric: node.lagBytes, op: ">", value: 1 }\n    summary: x\n',
      expect: 'rules.yaml: rule "LagHigh" (rules[0]): forMs: Invalid input: expected number, received undefined',
    },
    {
      text: `${oneRule("{ metric: node.lagBytes, op: '>', value: 1 }")}  - { name: LagHigh, severity: info, scope: node, forMs: 0, when: { metric: node.lagBytes, op: '>', value: 2 }, summary: y }\n`,
      expect: 'rules.yaml: rule "LagHigh" (rules[1]): name: duplicate of rules[0]',
    },
    {
      text: `retention: 5\n${oneRule("{ metric: node.lagBytes, op: '>', value: 1 }")}`,
      expect: 'rules.yaml: (top level): unknown key "retention"',
    },
    {
      text: 'rules:\n  - name: LagHigh\n    when: { metric: node.lagBytes, op: ">", value: 1\n',
      expect: 'rules.yaml: line 4 not valid YAML',
    },
  ];
  for (const { text, expect } of cases) {
    const problems = problemsOf(text);
    assert.ok(
      problems.some((line) => line.startsWith(expect)),
      `expected a line starting with\n  ${expect}\ngot\n  ${problems.join('\n  ')}`,
    );
  }
});

test('a file with several mistakes lists them all, and a missing file names its path', () => {
  // Proves nothing is hidden behind the first error, and I/O errors are as clear as schema ones.
  const problems = problemsOf(
    'rules:\n  - { name: A, severity: warning, scope: node, forMs: 0, when: { metric: node.rol, op: "==", value: primary }, summary: "{nope}" }\n  - { name: B, severity: info, scope: cluster, forMs: 0, when: { stale: node.agentLastSeenMs, afterMs: 1 }, summary: "{node}" }\n',
  );
  assert.deepEqual(problems, [
    'rules.yaml: rule "A" (rules[0]): when.metric: "node.rol" is not a metric; did you mean "node.role"?',
    'rules.yaml: rule "A" (rules[0]): summary: unknown placeholder {nope}',
    'rules.yaml: rule "B" (rules[1]): when.stale: "node.agentLastSeenMs" belongs to node rules, not cluster rules',
    'rules.yaml: rule "B" (rules[1]): summary: unknown placeholder {node} (a cluster rule has no {node})',
  ]);
  assert.throws(() => loadRules('/nonexistent/rules.yaml'), (error: unknown) => isParleyError(error) && error.message === '/nonexistent/rules.yaml: cannot read (ENOENT)');
});

test('any metric of the catalogue, used in a comparison of its own type, makes a valid rule', () => {
  // Proves the validator accepts everything the catalogue offers (no metric is unusable by mistake).
  const valueFor = (name: string): number | string | boolean => {
    const spec = metricCatalog[name]!;
    if (spec.values) return spec.values[0]!;
    return spec.type === 'boolean' ? true : spec.type === 'string' ? 'x' : 1;
  };
  fc.assert(
    fc.property(fc.constantFrom(...Object.keys(metricCatalog)), fc.constantFrom('==', '!='), (metric, op) => {
      const spec = metricCatalog[metric]!;
      const scope = spec.scope;
      const rules = parseRules({ rules: [{ name: 'Any', severity: 'info', scope, forMs: 0, when: { metric, op, value: valueFor(metric) }, summary: `{${metric}}` }] });
      assert.equal(rules.rules[0]!.scope, scope);
    }),
    { numRuns: 200 },
  );
});
