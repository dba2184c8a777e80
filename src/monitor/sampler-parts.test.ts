// The sampler's small parts, without a cluster: reading Prometheus text, LSNs, trailing rates over
// counters that reset, the hour of history, and the ops /metrics leaving unknown values out.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createOpsMetrics } from './exposition.ts';
import { createHistory } from './history.ts';
import { parsePrometheusText } from './promtext.ts';
import { lsnBytes, trailingRate } from './sampler.ts';
import type { NodeSample, Sample } from './samples.ts';

test('Prometheus text: names, labels with escapes, special values; comments and malformed lines skipped', () => {
  const series = parsePrometheusText(
    [
      '# HELP parley_database_errors_total Requests answered 503',
      '# TYPE parley_database_errors_total counter',
      'parley_database_errors_total{node="node1",pool="primary",cause="timeout"} 7',
      'parley_weird{path="a\\"b\\\\c\\nd"} 1.5e3 1700000000000',
      'parley_up +Inf',
      'parley_nan NaN',
      'not a metric line',
      'parley_broken{node="x} 3',
      'parley_plain 42',
    ].join('\n'),
  );
  assert.deepEqual(series[0], { name: 'parley_database_errors_total', labels: { node: 'node1', pool: 'primary', cause: 'timeout' }, value: 7 });
  assert.deepEqual(series[1], { name: 'parley_weird', labels: { path: 'a"b\\c\nd' }, value: 1500 });
  assert.equal(series[2]!.value, Number.POSITIVE_INFINITY);
  assert.ok(Number.isNaN(series[3]!.value));
  assert.deepEqual(series.slice(4), [{ name: 'parley_plain', labels: {}, value: 42 }]);
});

test('LSNs become byte offsets; anything else is null, never 0', () => {
  assert.equal(lsnBytes('0/0'), 0);
  assert.equal(lsnBytes('16/B374D848'), 0x16 * 2 ** 32 + 0xb374d848);
  assert.equal(lsnBytes(null), null);
  assert.equal(lsnBytes('garbage'), null);
});

test('a trailing rate over a counter that was reset counts from the reset', () => {
  const points = [
    { atMs: 0, value: 100 },
    { atMs: 5000, value: 150 },
    { atMs: 10_000, value: 200 },
  ];
  assert.equal(trailingRate(points, 10_000, 10_000), 10);
  assert.equal(trailingRate([{ atMs: 0, value: 500 }, { atMs: 10_000, value: 30 }], 10_000, 10_000), 3, 'reset: 30 since the restart');
  assert.equal(trailingRate([{ atMs: 0, value: 5 }], 0, 10_000), 0, 'one point is no rate');
});

test('the history keeps the last hour in order, even when the clock steps back', () => {
  const history = createHistory(3000);
  const at = (ms: number) => ({ timestampMs: ms }) as Sample;
  for (const ms of [1000, 2000, 3000, 4000, 5000]) history.add(at(ms));
  assert.deepEqual(history.all().map((s) => s.timestampMs), [2000, 3000, 4000, 5000]);
  history.add(at(3500));
  assert.deepEqual(history.all().map((s) => s.timestampMs), [2000, 3000, 3500], 'samples after a stepped-back clock are dropped');
  assert.deepEqual(history.since(3000).map((s) => s.timestampMs), [3000, 3500]);
  assert.equal(history.latest()?.timestampMs, 3500);
});

test('ops /metrics: a standby that cannot be read exports no lag at all, not 0; counters follow totals across a reset', async () => {
  const node = (over: Partial<NodeSample>): NodeSample => ({
    name: 'node1', role: 'primary', reachable: true, agentLastSeenMs: 1000, walReceiverStatus: null, lastMsgReceiptMs: null,
    sentLsn: null, writeLsn: null, flushLsn: 100, replayLsn: 100, lagBytes: 0, lagSeconds: 0, syncState: null,
    inReadPool: false, candidate: false, diskFreeBytes: 10, diskTotalBytes: 100, ...over,
  });
  const sample: Sample = {
    timestampMs: 2000,
    nodes: [node({}), node({ name: 'node2', role: 'standby', reachable: false, lagBytes: null, lagSeconds: null, walReceiverStatus: null, agentLastSeenMs: null })],
    primary: { name: 'node1', connections: 3, active: 1, waiting: 0, maxConnections: 200, commitsPerSec: 5 },
    appServers: [{ name: 'app-8080', lastSeenMs: null, requestsPerSec: 0, errors: [] }],
    lease: { holder: 'node1', expiresAtMs: 5000 },
    failover: null,
    maintenance: null,
  };
  const metrics = createOpsMetrics();
  metrics.update(sample, { commits: [{ node: 'node1', value: 100 }], requests: [], errors: [] }, []);
  metrics.update(sample, { commits: [{ node: 'node1', value: 40 }], requests: [], errors: [] }, []);
  const text = await metrics.registry.metrics();
  assert.doesNotMatch(text, /parley_replication_lag_bytes\{node="node2"\}/);
  assert.doesNotMatch(text, /parley_replication_lag_seconds\{node="node2"\}/);
  assert.match(text, /^parley_wal_receiver_streaming\{node="node2"\} 0$/m, 'no receiver reads as not streaming');
  assert.match(text, /^parley_wal_receiver_status\{node="node2",status="none"\} 1$/m);
  assert.match(text, /^parley_component_last_seen_timestamp_seconds\{component="agent",name="node2"\} 0$/m, 'never seen exports 0');
  assert.match(text, /^parley_primary_commits_total\{node="node1"\} 140$/m, '100, then 40 after a reset');
  assert.match(text, /^parley_lease_holder\{node="node1"\} 1$/m);
  assert.match(text, /^parley_failover_in_progress 0$/m);
});
