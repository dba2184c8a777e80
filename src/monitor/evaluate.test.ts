// Proves the alert evaluator's promises with examples and fast-check properties, time always an
// argument: `for` is honoured whatever the input does (no alert fires sooner, none resolves while
// its condition holds), an idle primary raises no alert, the trend rule warns before the level rule
// on a steady climb and stays quiet on noise, a stopped or frozen WAL receiver with lag reading 0
// (postgres_exporter's blind spot, its PR #977) still fires ReplicationStopped, and per-node rules
// fan out to one stable instance per node.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { alertId, emptyAlertState, evaluate, fitTrend, type AlertState, type Transition } from './evaluate.ts';
import { loadRules, parseRulesText, type RuleSet } from './rules.ts';
import type { NodeSample, Sample } from './samples.ts';

const t0 = 1_800_000_000_000;
const shipped = loadRules();

function node(name: string, t: number, over: Partial<NodeSample> = {}): NodeSample {
  const primary = (over.role ?? (name === 'node1' ? 'primary' : 'standby')) === 'primary';
  return {
    name,
    role: primary ? 'primary' : 'standby',
    reachable: true,
    agentLastSeenMs: t - 200,
    walReceiverStatus: primary ? null : 'streaming',
    lastMsgReceiptMs: primary ? null : t - 300,
    sentLsn: primary ? null : 50_000,
    writeLsn: primary ? null : 50_000,
    flushLsn: primary ? null : 50_000,
    replayLsn: 50_000,
    lagBytes: 0,
    lagSeconds: primary ? 0 : 0.3,
    syncState: primary ? null : 'quorum',
    inReadPool: true,
    candidate: true,
    diskFreeBytes: 60 * 2 ** 30,
    diskTotalBytes: 100 * 2 ** 30,
    ...over,
  };
}

/** A healthy three-node cluster with one app server at time t; `nodes` overrides per node. */
function sample(t: number, nodes: Partial<Record<string, Partial<NodeSample>>> = {}, over: Partial<Sample> = {}): Sample {
  return {
    timestampMs: t,
    nodes: ['node1', 'node2', 'node3'].map((name) => node(name, t, nodes[name])),
    primary: { name: 'node1', connections: 12, active: 2, waiting: 0, maxConnections: 200, commitsPerSec: 1 },
    appServers: [{ name: 'app1', lastSeenMs: t - 400, requestsPerSec: 20, errors: [] }],
    lease: { holder: 'node1', expiresAtMs: t + 3000 },
    failover: null,
    maintenance: null,
    ...over,
  };
}

/** Feeds samples one by one, evaluating at each sample's time; returns every transition and the final state. */
function run(samples: readonly Sample[], rules: RuleSet, options: { until?: (t: Transition) => boolean } = {}): { transitions: Transition[]; state: AlertState } {
  let state = emptyAlertState();
  const history: Sample[] = [];
  const transitions: Transition[] = [];
  for (const s of samples) {
    history.push(s);
    const result = evaluate(history, rules, state, s.timestampMs);
    state = result.state;
    transitions.push(...result.transitions);
    if (options.until && result.transitions.some(options.until)) break;
  }
  return { transitions, state };
}

function firstFiring(transitions: readonly Transition[], name: string, subject: string | null = null): Transition | undefined {
  return transitions.find((t) => t.to === 'firing' && t.alert.name === name && (subject === null || t.alert.node === subject));
}

function seconds(count: number, make: (t: number, i: number) => Sample): Sample[] {
  return Array.from({ length: count }, (_, i) => make(t0 + i * 1000, i));
}

function rule(name: string): RuleSet['rules'][number] {
  const found = shipped.rules.find((r) => r.name === name);
  assert.ok(found, `rules.yaml has no rule ${name}`);
  return found;
}

/** The threshold of the first comparison on `metric` in a shipped rule, so tests follow the file. */
function thresholdOf(name: string, metric: string): number {
  const find = (c: RuleSet['rules'][number]['when']): number | undefined => {
    if ('all' in c) return c.all.map(find).find((v) => v !== undefined);
    if ('any' in c) return c.any.map(find).find((v) => v !== undefined);
    if ('metric' in c && c.metric === metric && typeof c.value === 'number') return c.value;
    if ('trend' in c && c.trend === metric) return c.threshold;
    return undefined;
  };
  const value = find(rule(name).when);
  assert.ok(value !== undefined, `${name} has no threshold on ${metric}`);
  return value;
}

// ---- examples ----

test('a stopped WAL receiver fires ReplicationStopped within 10 s although lag reads 0', () => {
  // Proves the PR #977 blind spot is covered: status "stopped", lag 0 B and 0 s, still an alert in ≤ 10 s.
  const stopAt = t0 + 5000;
  const samples = seconds(30, (t) =>
    sample(t, t >= stopAt ? { node2: { walReceiverStatus: 'stopped', lastMsgReceiptMs: stopAt - 300, lagBytes: 0, lagSeconds: 0 } } : {}),
  );
  const { transitions } = run(samples, shipped);
  const fired = firstFiring(transitions, 'ReplicationStopped', 'node2');
  assert.ok(fired, 'ReplicationStopped never fired');
  assert.ok(fired.atMs - stopAt <= 10_000, `fired ${fired.atMs - stopAt} ms after the stop`);
  assert.match(fired.alert.summary, /^node2 is not replicating: WAL receiver stopped/);
  assert.equal(fired.alert.severity, 'critical');
  assert.equal(firstFiring(transitions, 'ReplicationStopped', 'node3'), undefined, 'the healthy standby must not alert');
  assert.ok(!transitions.some((t) => /Lag/.test(t.alert.name)), 'lag reads 0, so no lag rule may fire');
});

test('a frozen WAL receiver (SIGSTOP: still "streaming", no messages) fires within 10 s and resolves after it resumes', () => {
  // Proves staleness of the last message is caught even though status and lag look healthy, and that the alert ends.
  const freezeAt = t0 + 10_000;
  const resumeAt = t0 + 40_000;
  const samples = seconds(60, (t) => {
    const frozen = t >= freezeAt && t < resumeAt;
    return sample(t, frozen ? { node3: { walReceiverStatus: 'streaming', lastMsgReceiptMs: freezeAt - 400, lagBytes: 0, lagSeconds: 0 } } : {});
  });
  const { transitions } = run(samples, shipped);
  const fired = firstFiring(transitions, 'ReplicationStopped', 'node3');
  assert.ok(fired, 'ReplicationStopped never fired');
  assert.ok(fired.atMs - freezeAt <= 10_000, `fired ${fired.atMs - freezeAt} ms after the freeze`);
  assert.match(fired.alert.summary, /node3 is not replicating: WAL receiver streaming, last message from the primary \d+(\.\d)? s ago/);
  const resolved = transitions.find((t) => t.to === 'resolved' && t.alert.node === 'node3');
  assert.ok(resolved && resolved.atMs >= resumeAt && resolved.atMs <= resumeAt + 2000, 'resolves at the first sample after resuming');
  assert.equal(resolved.alert.endsAtMs, resolved.atMs);
  assert.equal(resolved.alert.startsAtMs, fired.atMs);
});

test('per-node rules fan out: one instance per node, with a stable id that differs between nodes', () => {
  // Proves fan-out and fingerprints: two stopped standbys are two alerts; the same node keeps its id.
  const samples = seconds(10, (t) => sample(t, { node2: { walReceiverStatus: null }, node3: { walReceiverStatus: 'starting' } }));
  const { state } = run(samples, shipped);
  const stopped = Object.values(state.alerts).filter((a) => a.name === 'ReplicationStopped');
  assert.deepEqual(stopped.map((a) => a.node).sort(), ['node2', 'node3']);
  assert.ok(stopped.every((a) => a.status === 'firing'));
  assert.notEqual(stopped[0]!.id, stopped[1]!.id);
  assert.equal(alertId('ReplicationStopped', 'node2'), alertId('ReplicationStopped', 'node2'));
  assert.equal(state.alerts[alertId('ReplicationStopped', 'node2')]?.node, 'node2');
  assert.match(state.alerts[alertId('ReplicationStopped', 'node2')]!.summary, /WAL receiver unknown/);
});

const simple = parseRulesText(`
rules:
  - name: LagOver
    severity: warning
    scope: node
    forMs: 3000
    keepFiringForMs: 2000
    when: { metric: node.lagBytes, op: '>', value: 100 }
    summary: '{node} lag {node.lagBytes|bytes}'
`);

test('pending becomes firing only after for, drops back to inactive if the condition stops first', () => {
  // Proves the state machine on a hand-written timeline: inactive → pending → inactive, then pending → firing → resolved.
  const lag = [0, 200, 200, 0, 200, 200, 200, 200, 200, 0, 0, 0, 0];
  const samples = lag.map((lagBytes, i) => sample(t0 + i * 1000, { node2: { lagBytes } }));
  const { transitions } = run(samples, simple);
  const steps = transitions.map((t) => `${(t.atMs - t0) / 1000}:${t.from}->${t.to}`);
  // Pending at 1 s, gone at 3 s; pending again at 4 s, firing at 7 s (3 s later); the condition last
  // holds at 8 s, keepFiringFor (2 s) keeps it firing at 9 s, and it resolves at 10 s.
  assert.deepEqual(steps, ['1:inactive->pending', '3:pending->inactive', '4:inactive->pending', '7:pending->firing', '10:firing->resolved']);
  const firing = transitions[3]!.alert;
  assert.equal(firing.activeAtMs, t0 + 4000);
  assert.equal(firing.startsAtMs, t0 + 7000);
  assert.equal(firing.summary, 'node2 lag 200 B');
});

test('the dependency rule names the dependency and its causes', () => {
  // Proves error-rate alerts point at what is behind the errors, summed over app servers.
  const samples = seconds(15, (t) =>
    sample(t, {}, {
      appServers: [
        { name: 'app1', lastSeenMs: t, requestsPerSec: 40, errors: [{ cause: 'storage_unavailable', dependency: 'node1', perSec: 6 }] },
        { name: 'app2', lastSeenMs: t, requestsPerSec: 40, errors: [{ cause: 'overloaded', dependency: 'node1', perSec: 2 }, { cause: 'overloaded', dependency: 'lease-store', perSec: 0.1 }] },
      ],
    }),
  );
  const { transitions } = run(samples, shipped);
  const fired = firstFiring(transitions, 'DependencyErrorRate');
  assert.ok(fired);
  assert.equal(fired.alert.node, 'node1');
  assert.equal(fired.alert.summary, 'errors from node1: 8/s (10% of requests) on app1, app2: storage_unavailable 6/s, overloaded 2/s');
  assert.equal(firstFiring(transitions, 'DependencyErrorRate', 'lease-store'), undefined, '0.1/s is under the floor');
});

test('cluster rules: no synchronous standby, a failover past 15 s, maintenance near and past its expiry', () => {
  // Proves the cluster-scoped rules fire on their conditions, with summaries naming what matters.
  const noSync = run(seconds(6, (t) => sample(t, { node2: { syncState: null }, node3: { syncState: 'async' } })), shipped);
  assert.match(firstFiring(noSync.transitions, 'NoSynchronousStandby')?.alert.summary ?? '', /^no synchronous standby: sends on node1 cannot be acknowledged \(node2 \(WAL receiver streaming, unknown to the primary\), node3 \(WAL receiver streaming, async\)\)$/);

  const failover = run(seconds(20, (t) => sample(t, {}, { failover: { inProgress: true, startedAtMs: t0 } })), shipped);
  const slow = firstFiring(failover.transitions, 'FailoverTooLong');
  assert.equal(slow?.atMs, t0 + 16_000);
  assert.match(slow?.alert.summary ?? '', /^failover running for 16 s \(started \d\d:\d\d:\d\dZ\)/);

  const expires = t0 + 400_000;
  const maintenance = run(
    seconds(420, (t) => sample(t, {}, { maintenance: { on: true, expiresAtMs: expires, reason: 'kernel upgrade', node: null } })).filter((_, i) => i % 10 === 0),
    shipped,
  );
  const soon = firstFiring(maintenance.transitions, 'MaintenanceExpiringSoon');
  const past = firstFiring(maintenance.transitions, 'MaintenanceExpired');
  assert.equal(soon?.atMs, t0 + 100_000);
  assert.equal(soon?.alert.summary, 'maintenance of the whole cluster ("kernel upgrade") ends in 5 min; automatic failover is armed again then');
  assert.equal(past?.atMs, expires);
  assert.ok(maintenance.transitions.some((t) => t.alert.name === 'MaintenanceExpiringSoon' && t.to === 'resolved' && t.atMs === expires));
});

test('components not reporting, saturation and disk are alerted, each naming its subject', () => {
  // Proves the staleness and capacity rules on one timeline where everything goes wrong at once.
  const samples = seconds(70, (t) =>
    sample(
      t,
      { node3: { agentLastSeenMs: t0, diskFreeBytes: 3 * 2 ** 30 } },
      {
        primary: { name: 'node1', connections: 150, active: 150, waiting: 20, maxConnections: 200, commitsPerSec: 900 },
        appServers: [{ name: 'app1', lastSeenMs: t0, requestsPerSec: 0, errors: [] }],
      },
    ),
  );
  const { transitions } = run(samples, shipped);
  assert.equal(firstFiring(transitions, 'AgentNotReporting', 'node3')?.alert.summary, "node3's agent last reported 6.0 s ago");
  assert.equal(firstFiring(transitions, 'AppServerNotReporting', 'app1')?.alert.summary, 'app server app1 last answered /metrics 6.0 s ago');
  assert.equal(firstFiring(transitions, 'PrimarySaturated')?.alert.summary, 'primary node1 saturated: 150 active + 20 waiting sessions, 150 connections of max_connections 200 (900/s commits)');
  assert.match(firstFiring(transitions, 'DiskNearlyFull', 'node3')?.alert.summary ?? '', /^node3: disk nearly full, 3\.0 GiB free of 100\.0 GiB \(3%\)/);
  assert.ok(firstFiring(transitions, 'DiskSpaceLow', 'node3'));
  assert.equal(firstFiring(transitions, 'DiskSpaceLow', 'node2'), undefined);
});

test('with no sample at all only SamplerStalled can fire; resolved alerts are forgotten after keepResolvedMs', () => {
  // Proves the evaluator's edges: an empty history, and the bounded memory of resolved alerts.
  const empty = evaluate([], shipped, emptyAlertState(), t0);
  assert.deepEqual(empty.transitions.map((t) => `${t.alert.name}:${t.to}`), ['SamplerStalled:firing']);
  const flap = run([sample(t0, { node2: { lagBytes: 500 } }), ...seconds(8, (t) => sample(t + 1000, { node2: { lagBytes: 500 } })), sample(t0 + 20_000)], simple);
  const resolved = Object.values(flap.state.alerts);
  assert.deepEqual(resolved.map((a) => a.status), ['resolved']);
  const later = evaluate([sample(t0 + 20_000)], { ...simple, keepResolvedMs: 60_000 }, flap.state, t0 + 20_000 + 60_001);
  assert.deepEqual(later.state.alerts, {});
});

test('alerts of a rule removed from the rule set resolve (firing) or vanish (pending)', () => {
  // Proves reloading rules never leaves an alert firing forever with nothing to resolve it.
  const { state } = run(seconds(5, (t) => sample(t, { node2: { lagBytes: 500 } })), simple);
  assert.equal(Object.values(state.alerts)[0]?.status, 'firing');
  const other = parseRulesText(`rules:\n  - {name: Other, severity: info, scope: cluster, forMs: 0, when: {metric: cluster.nodes, op: '>', value: 99}, summary: x}\n`);
  const result = evaluate([sample(t0 + 5000)], other, state, t0 + 5000);
  assert.deepEqual(result.transitions.map((t) => `${t.alert.name}:${t.from}->${t.to}`), ['LagOver:firing->resolved']);
});

test('fitTrend fits a line: slope per second, value now, and R² near 1 for a line, near 0 for a flat wobble', () => {
  // Proves the least-squares arithmetic the trend rule rests on.
  const line = fitTrend([0, 1, 2, 3, 4].map((i) => ({ atMs: t0 - 4000 + i * 1000, value: 100 + 50 * i })), t0);
  assert.ok(line);
  assert.ok(Math.abs(line.perSecond - 50) < 1e-9 && Math.abs(line.valueAtNow - 300) < 1e-9 && Math.abs(line.fit - 1) < 1e-9);
  const wobble = fitTrend([5, 1, 5, 1, 5, 1].map((value, i) => ({ atMs: t0 + i * 1000, value })), t0);
  assert.ok(wobble && wobble.fit < 0.2);
  assert.equal(fitTrend([{ atMs: t0, value: 1 }], t0), null);
});

test('a trend needs minSamples points in its window: a few seconds of history are never extrapolated', () => {
  // Proves minSamples: a perfect steep line fires the trend rule only once the window holds 20 points.
  const minSamples = (() => {
    const when = rule('ReplicationLagGrowing').when;
    const trend = 'all' in when ? when.all.find((c) => 'trend' in c) : undefined;
    assert.ok(trend && 'trend' in trend);
    return trend.minSamples;
  })();
  const samples = seconds(minSamples + 10, (t, i) => sample(t, { node2: { lagBytes: 400_000 * (i + 1) } }));
  const { transitions } = run(samples, shipped);
  const pending = transitions.find((t) => t.alert.name === 'ReplicationLagGrowing' && t.to === 'pending');
  assert.ok(pending, 'the trend rule never went pending');
  assert.equal(pending.atMs, t0 + (minSamples - 1) * 1000, 'pending exactly when the window first holds minSamples points');
});

test('evaluate.ts stays pure: no node: imports, no clock, no randomness', () => {
  // Proves STYLE.md's purity rule for this file until test/architecture.test.ts lists it.
  const source = readFileSync(new URL('./evaluate.ts', import.meta.url), 'utf8');
  const code = source.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
  for (const forbidden of [/from\s+'node:/, /from\s+'(pg|fastify)'/, /Date\.now\(/, /performance\.now\(/, /Math\.random\(/, /new Date\(\)/, /\bprocess\./, /setTimeout|setInterval/]) {
    assert.doesNotMatch(code, forbidden);
  }
});

// ---- properties ----

test('flapping input never makes an alert fire before its condition held for forMs, nor resolve while it holds', () => {
  // Proves `for` and keepFiringFor under arbitrary flapping and irregular evaluation times.
  fc.assert(
    fc.property(
      fc.constantFrom(0, 1000, 2500, 3000, 10_000),
      fc.constantFrom(0, 1000, 5000),
      fc.array(fc.record({ dtMs: fc.integer({ min: 1, max: 3000 }), holds: fc.boolean() }), { minLength: 1, maxLength: 120 }),
      (forMs, keepFiringForMs, steps) => {
        const rules = parseRulesText(`rules:\n  - {name: Flap, severity: warning, scope: node, forMs: ${forMs}, keepFiringForMs: ${keepFiringForMs}, when: {metric: node.lagBytes, op: '>', value: 100}, summary: '{node}'}\n`);
        let t = t0;
        const timeline: { t: number; holds: boolean }[] = [];
        const samples = steps.map((s) => {
          t += s.dtMs;
          timeline.push({ t, holds: s.holds });
          return sample(t, { node2: { lagBytes: s.holds ? 500 : 0 } });
        });
        const { transitions } = run(samples, rules);
        for (const tr of transitions) {
          const at = timeline.findIndex((p) => p.t === tr.atMs);
          if (tr.to === 'firing') {
            assert.ok(tr.alert.activeAtMs <= tr.atMs - forMs, `fired at ${tr.atMs - t0} after holding only since ${tr.alert.activeAtMs - t0}`);
            const window = timeline.filter((p) => p.t >= tr.alert.activeAtMs && p.t <= tr.atMs);
            assert.ok(window.every((p) => p.holds), 'fired although the condition did not hold at every evaluation since pending');
            if (forMs > 0) assert.equal(tr.from, 'pending');
          }
          if (tr.to === 'resolved') {
            assert.equal(tr.from, 'firing');
            assert.equal(timeline[at]!.holds, false);
            const lastHeld = [...timeline.slice(0, at)].reverse().find((p) => p.holds)!;
            assert.ok(tr.atMs - lastHeld.t >= keepFiringForMs, 'resolved inside keepFiringFor');
          }
          if (tr.from === 'pending' && tr.to === 'inactive') assert.equal(timeline[at]!.holds, false);
        }
      },
    ),
    { numRuns: 300 },
  );
});

/** An idle cluster: only the heartbeat writes, so lag is a few KiB and under ~1 s, messages arrive every second. */
const idleSampleArb = (t: number): fc.Arbitrary<Sample> =>
  fc
    .record({
      lagBytes: fc.tuple(fc.integer({ min: 0, max: 8192 }), fc.integer({ min: 0, max: 8192 })),
      lagSeconds: fc.tuple(fc.double({ min: 0, max: 1.2, noNaN: true }), fc.double({ min: 0, max: 1.2, noNaN: true })),
      receiptAgeMs: fc.tuple(fc.integer({ min: 0, max: 1100 }), fc.integer({ min: 0, max: 1100 })),
      agentAgeMs: fc.integer({ min: 0, max: 1000 }),
    })
    .map(({ lagBytes, lagSeconds, receiptAgeMs, agentAgeMs }) =>
      sample(
        t,
        {
          node1: { agentLastSeenMs: t - agentAgeMs },
          node2: { lagBytes: lagBytes[0], lagSeconds: lagSeconds[0], lastMsgReceiptMs: t - receiptAgeMs[0] },
          node3: { lagBytes: lagBytes[1], lagSeconds: lagSeconds[1], lastMsgReceiptMs: t - receiptAgeMs[1] },
        },
        { primary: { name: 'node1', connections: 12, active: 0, waiting: 0, maxConnections: 200, commitsPerSec: 1 } },
      ),
    );

test('an idle primary (heartbeat only) never raises a lag alert, nor any other', () => {
  // Proves lag measured through the heartbeat cannot alarm on an idle cluster, over minutes of jittered samples.
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 500, max: 1500 }), { minLength: 60, maxLength: 300 }).chain((gaps) => {
        let t = t0;
        return fc.tuple(...gaps.map((gap) => idleSampleArb((t += gap))));
      }),
      (samples) => {
        const { transitions } = run(samples, shipped);
        const lag = transitions.filter((tr) => /Lag/.test(tr.alert.name));
        assert.deepEqual(lag.map((tr) => `${tr.alert.name} ${tr.to}: ${tr.alert.summary}`), []);
        assert.deepEqual(transitions.map((tr) => `${tr.alert.name} ${tr.to}: ${tr.alert.summary}`), []);
      },
    ),
    { numRuns: 60 },
  );
});

test('on a steadily growing lag the trend rule fires before the level rule', () => {
  // Proves the early warning: for any climb reaching the threshold in 30 s to 10 min, trend first. The
  // jitter is what a real climb shows: readings taken up to 2 s early or late, plus heartbeat noise.
  const threshold = thresholdOf('ReplicationLagBytesHigh', 'node.lagBytes');
  assert.equal(thresholdOf('ReplicationLagGrowing', 'node.lagBytes'), threshold, 'trend and level rules share the threshold');
  fc.assert(
    fc.property(
      fc.integer({ min: 30, max: 600 }),
      fc.integer({ min: 0, max: 64 * 1024 }),
      fc.array(fc.double({ min: -2, max: 2, noNaN: true }), { minLength: 700, maxLength: 700 }),
      fc.array(fc.integer({ min: 0, max: 8192 }), { minLength: 700, maxLength: 700 }),
      fc.array(fc.integer({ min: -200, max: 200 }), { minLength: 700, maxLength: 700 }),
      (crossAfterS, base, readingJitterS, heartbeat, clockJitterMs) => {
        const perSecond = (threshold - base) / crossAfterS;
        const samples = Array.from({ length: crossAfterS + 30 }, (_, i) => {
          const t = t0 + i * 1000 + clockJitterMs[i]!;
          const lagBytes = Math.max(0, Math.round(base + perSecond * (i + readingJitterS[i]!) + heartbeat[i]!));
          return sample(t, { node2: { lagBytes, lagSeconds: lagBytes / 1e6 } });
        });
        const { transitions } = run(samples, shipped, { until: (t) => t.to === 'firing' && t.alert.name === 'ReplicationLagBytesHigh' });
        const trend = firstFiring(transitions, 'ReplicationLagGrowing', 'node2');
        const level = firstFiring(transitions, 'ReplicationLagBytesHigh', 'node2');
        assert.ok(level, 'the level rule never fired');
        assert.ok(trend, 'the trend rule never fired');
        assert.ok(trend.atMs < level.atMs, `trend fired at ${trend.atMs - t0} ms, level at ${level.atMs - t0} ms`);
        // Not just before the level rule's \`for\` ran out: before the lag ever reached the threshold.
        const crossed = samples.find((s) => (s.nodes[1]!.lagBytes ?? 0) > threshold)!;
        assert.ok(trend.atMs < crossed.timestampMs, `trend fired at ${trend.atMs - t0} ms, after the lag crossed at ${crossed.timestampMs - t0} ms`);
        assert.match(trend.alert.summary, /^node2's lag is growing [\d.]+ (KiB|MiB)\/s and reaches 16\.0 MiB in /);
        assert.equal(firstFiring(transitions, 'ReplicationLagGrowing', 'node3'), undefined);
      },
    ),
    { numRuns: 40 },
  );
});

test('the trend rule stays quiet on noise, however large, that is going nowhere', () => {
  // Proves minFit and minSamples: independent lag readings anywhere up to 90 % of the threshold (wild
  // enough that a bare projection would cross it often) never fire the trend rule.
  const threshold = thresholdOf('ReplicationLagGrowing', 'node.lagBytes');
  fc.assert(
    fc.property(fc.array(fc.noBias(fc.integer({ min: 0, max: Math.floor(threshold * 0.9) })), { minLength: 180, maxLength: 180 }), (lags) => {
      const samples = lags.map((lagBytes, i) => sample(t0 + i * 1000, { node2: { lagBytes } }));
      const { transitions } = run(samples, shipped);
      assert.equal(firstFiring(transitions, 'ReplicationLagGrowing'), undefined);
      assert.equal(firstFiring(transitions, 'ReplicationLagBytesHigh'), undefined);
    }),
    { numRuns: 60 },
  );
});
