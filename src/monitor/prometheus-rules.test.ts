// Proves the Prometheus files in deploy/prometheus/ are valid and say the same as Parley's own
// rules: promtool accepts the rules, their unit tests and the scrape config; every rule of
// src/monitor/rules.yaml has an alert of the same name and severity in rules.yml (and back); every
// metric the files and the dashboard use is one README.md documents, and the dashboard's queries
// parse. The promtool checks need Debian's `prometheus` package (issue 7); without it they skip.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { loadRules } from './rules.ts';

const deploy = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));
const promtoolTimeoutMs = 60_000;

function promtoolAvailable(): boolean {
  const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8', timeout: promtoolTimeoutMs });
  return probe.error === undefined && probe.status === 0;
}

const skip = promtoolAvailable() ? false : 'promtool is not on PATH: install the Debian package "prometheus" (issue 7)';

/** Runs promtool in deploy/prometheus/ (rule_files are relative to it) and fails with its output. */
function promtool(args: readonly string[], cwd = deploy): void {
  const result = spawnSync('promtool', args, { cwd, encoding: 'utf8', timeout: promtoolTimeoutMs });
  assert.equal(result.error, undefined, `promtool ${args.join(' ')}: ${String(result.error)}`);
  assert.equal(result.status, 0, `promtool ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
}

interface PrometheusRuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string; labels?: Record<string, string> }[] }[];
}

function prometheusRules(): PrometheusRuleFile {
  return parseYaml(readFileSync(join(deploy, 'rules.yml'), 'utf8')) as PrometheusRuleFile;
}

interface Dashboard {
  panels: { type: string; title: string; targets?: { expr: string }[] }[];
}

function dashboard(): Dashboard {
  return JSON.parse(readFileSync(join(deploy, 'grafana-dashboard.json'), 'utf8')) as Dashboard;
}

test('promtool check rules accepts deploy/prometheus/rules.yml', { skip }, () => {
  // Proves the shipped Prometheus rules are valid (issue 7's "Done when").
  promtool(['check', 'rules', 'rules.yml']);
});

test('promtool check config accepts deploy/prometheus/prometheus.yml', { skip }, () => {
  // Proves the scrape config (and the rule file it loads) is valid.
  promtool(['check', 'config', 'prometheus.yml']);
});

test('promtool test rules passes deploy/prometheus/rules-test.yml', { skip }, () => {
  // Proves the PromQL twins behave: frozen receiver fires, trend before level, quiet on noise and idle.
  promtool(['test', 'rules', 'rules-test.yml']);
});

test("every dashboard query parses as PromQL", { skip }, () => {
  // Proves the Grafana panels will not show "parse error": each query is checked as a recording rule.
  const dir = mkdtempSync(join(tmpdir(), 'parley-dashboard-'));
  try {
    const exprs = dashboard().panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
    assert.ok(exprs.length >= 10, 'the dashboard has its panels');
    const rules = exprs.map((expr, i) => `      - record: parley_dashboard_query_${i}\n        expr: ${JSON.stringify(expr)}\n`).join('');
    writeFileSync(join(dir, 'queries.yml'), `groups:\n  - name: dashboard\n    rules:\n${rules}`);
    promtool(['check', 'rules', 'queries.yml'], dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every rule of rules.yaml has an alert of the same name and severity in deploy/prometheus/rules.yml, and back', () => {
  // Proves the two rule sets cannot drift apart by name or severity.
  const ours = new Map(loadRules().rules.map((rule) => [rule.name, rule.severity]));
  const theirs = new Map<string, string | undefined>();
  for (const group of prometheusRules().groups) {
    for (const rule of group.rules) if (rule.alert !== undefined) theirs.set(rule.alert, rule.labels?.severity);
  }
  const missing = [...ours.keys()].filter((name) => !theirs.has(name));
  const extra = [...theirs.keys()].filter((name) => !ours.has(name));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, 'rule names differ between src/monitor/rules.yaml and deploy/prometheus/rules.yml');
  for (const [name, severity] of ours) assert.equal(theirs.get(name), severity, `severity of ${name}`);
});

test('every metric the Prometheus files and the dashboard use is documented in deploy/prometheus/README.md', () => {
  // Proves the README's table is the whole contract the ops process's sampler must export.
  const readme = readFileSync(join(deploy, 'README.md'), 'utf8');
  const documented = new Set([...readme.matchAll(/`(parley_[a-z_]+)`/g)].map((m) => m[1]!));
  const used = new Set<string>();
  const texts = [readFileSync(join(deploy, 'rules.yml'), 'utf8'), readFileSync(join(deploy, 'rules-test.yml'), 'utf8'), readFileSync(join(deploy, 'grafana-dashboard.json'), 'utf8')];
  for (const text of texts) for (const m of text.matchAll(/\b(parley_[a-z_]+)/g)) used.add(m[1]!.replace(/_(bucket|count|sum)$/, ''));
  const undocumented = [...used].filter((name) => !documented.has(name)).sort();
  assert.deepEqual(undocumented, []);
  const titles = dashboard().panels.map((panel) => panel.title);
  for (const title of ['Replication lag (bytes)', 'Replication lag (seconds)', 'WAL receiver streaming', 'Errors by dependency', 'Primary connections and sessions']) {
    assert.ok(titles.includes(title), `dashboard panel "${title}"`);
  }
});
