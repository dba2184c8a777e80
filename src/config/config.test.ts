// Proves that configuration is validated by one schema, names the key of every problem, and that
// PARLEY_* environment variables override file values.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkConfig, configKeys, envName, lintConfig, loadConfig } from './config.ts';
import { isParleyError } from '../errors/errors.ts';

test('an empty configuration is valid and every key has a default', () => {
  const result = checkConfig({});
  assert.equal(result.ok, true);
  if (result.ok) {
    assert.equal(result.config.http.port, 8080);
    assert.equal(result.config.cluster.nodes, 3);
  }
});

test('problems name the key: unknown key, wrong type, out of range, dangerous combination', () => {
  const result = checkConfig({
    cluster: { leaseTtlMs: 'soon', bogus: 1 },
    http: { port: 70000 },
    data: { poolSize: 0 },
    extra: true,
  });
  assert.equal(result.ok, false);
  if (result.ok) return;
  const text = result.problems.join('\n');
  assert.match(text, /^cluster\.bogus: unknown key$/m);
  assert.match(text, /^extra: unknown key$/m);
  assert.match(text, /^cluster\.leaseTtlMs: .*number/m);
  assert.match(text, /^http\.port: .*65535/m);
  assert.match(text, /^data\.poolSize: /m);

  const dangerous = checkConfig({ cluster: { leaseTtlMs: 1000, loopIntervalMs: 500 } });
  assert.equal(dangerous.ok, false);
  if (!dangerous.ok) assert.match(dangerous.problems.join('\n'), /^cluster\.leaseTtlMs: must be at least 3 × cluster\.loopIntervalMs/m);
});

test('the example from API.md is valid', () => {
  const result = checkConfig({
    cluster: { nodes: 3, leaseTtlMs: 3000, failoverDeadlineMs: 30000, maximumLagOnFailoverBytes: 1048576 },
    alerting: {
      channels: [
        { name: 'mail', type: 'email', smtp: { host: '127.0.0.1', port: 2525 }, from: 'parley@localhost', to: ['oncall@localhost'] },
        { name: 'hook', type: 'webhook', url: 'http://127.0.0.1:9099/alerts' },
      ],
    },
  });
  assert.deepEqual(result.ok ? [] : result.problems, []);
});

test('environment overrides file values and names the variable when unparsable', () => {
  const dir = mkdtempSync(join(tmpdir(), 'parley-config-'));
  const file = join(dir, 'parley.yaml');
  writeFileSync(file, 'http:\n  port: 9000\ncluster:\n  leaseTtlMs: 4000\n');
  assert.equal(envName('cluster.leaseTtlMs'), 'PARLEY_CLUSTER_LEASE_TTL_MS');
  assert.ok(configKeys().includes('http.port'));
  const config = loadConfig({ file, env: { PARLEY_HTTP_PORT: '8123' } });
  assert.equal(config.http.port, 8123);
  assert.equal(config.cluster.leaseTtlMs, 4000);
  assert.throws(
    () => loadConfig({ file, env: { PARLEY_HTTP_PORT: 'abc' } }),
    (error: unknown) => isParleyError(error) && /http\.port/.test(error.message),
  );
});

test('every alerting key can be overridden from the environment, strings taken as they are', () => {
  // Proves the env walk reaches the nested alerting section (lists as JSON, numbers as YAML), that
  // string keys are not reinterpreted (a secret of digits, a time like 09:00), and that no two keys
  // share a variable.
  const keys = configKeys();
  for (const key of ['alerting.channels', 'alerting.delivery.timeoutMs', 'alerting.rota.handoff.at', 'alerting.heartbeat.url', 'alerting.ackSecret', 'alerting.externalUrl']) {
    assert.ok(keys.includes(key), key);
  }
  assert.equal(new Set(keys.map(envName)).size, keys.length);
  const config = loadConfig({
    env: {
      PARLEY_ALERTING_CHANNELS: '[{"name":"mail","type":"email","smtp":{"host":"127.0.0.1","port":2525,"user":"parley","password":"s3cret"},"to":["oncall@localhost"]},{"name":"hook","type":"webhook","url":"http://127.0.0.1:9099/"}]',
      PARLEY_ALERTING_DELIVERY_TIMEOUT_MS: '2000',
      PARLEY_ALERTING_ROTA_HANDOFF_AT: '09:00',
      PARLEY_ALERTING_ROTA_SINCE: '2024-06-03T09:00:00Z',
      PARLEY_ALERTING_ACK_SECRET: '1234567890123456789',
      PARLEY_ALERTING_HEARTBEAT_URL: 'https://deadman.example.org/parley',
    },
  });
  const [mail] = config.alerting.channels;
  assert.equal(mail?.type === 'email' ? mail.smtp.password : undefined, 's3cret');
  assert.equal(config.alerting.delivery.timeoutMs, 2000);
  assert.equal(config.alerting.rota.handoff.at, '09:00');
  assert.equal(config.alerting.rota.since, '2024-06-03T09:00:00Z');
  assert.equal(config.alerting.ackSecret, '1234567890123456789');
  assert.equal(config.alerting.heartbeat.url, 'https://deadman.example.org/parley');
  assert.throws(
    () => loadConfig({ env: { PARLEY_ALERTING_DELIVERY_RETRIES: 'many' } }),
    (error: unknown) => isParleyError(error) && /alerting\.delivery\.retries/.test(error.message),
  );
});

test('a file that is not YAML or not a mapping is reported with its name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'parley-config-'));
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'http: [1, 2\n');
  assert.throws(() => loadConfig({ file: bad, env: {} }), /bad\.yaml:.*not valid YAML/);
  const list = join(dir, 'list.yaml');
  writeFileSync(list, '- 1\n- 2\n');
  assert.throws(() => loadConfig({ file: list, env: {} }), /must be a mapping/);
  assert.throws(() => loadConfig({ file: join(dir, 'missing.yaml'), env: {} }), /cannot read \(ENOENT\)/);
});

test('lintConfig warns, naming the key, about valid settings that could cause or hide an outage', () => {
  // Proves the dangerous-but-valid settings are flagged and the safe defaults are not (apart from
  // the missing alert channel, which the defaults cannot know).
  const defaults = checkConfig({});
  assert.ok(defaults.ok);
  assert.deepEqual(lintConfig(defaults.config).map((f) => f.key), ['alerting.channels']);
  const risky = checkConfig({
    cluster: { nodes: 2, leaseTtlMs: 60_000, failoverDeadlineMs: 600_000, primaryStartTimeoutMs: 900_000, maximumLagOnFailoverBytes: 1024 ** 3 },
    data: { queryTimeoutMs: 30_000 },
    maintenance: { maxTtlMs: 48 * 3_600_000 },
    log: { level: 'silent' },
    alerting: { channels: [{ name: 'pager', type: 'webhook', url: 'http://127.0.0.1:9/hook' }] },
  });
  assert.ok(risky.ok, risky.ok ? '' : risky.problems.join('; '));
  const keys = lintConfig(risky.config).map((f) => f.key).sort();
  assert.deepEqual(keys, [
    'alerting.channels',
    'cluster.failoverDeadlineMs',
    'cluster.leaseTtlMs',
    'cluster.maximumLagOnFailoverBytes',
    'cluster.nodes',
    'cluster.primaryStartTimeoutMs',
    'data.queryTimeoutMs',
    'log.level',
    'maintenance.maxTtlMs',
  ]);
  for (const finding of lintConfig(risky.config)) assert.ok(finding.message.length > 20 && !finding.message.includes('\n'), finding.message);
});
