// Proves issue 7 on a real three-node cluster under `parley up`, with real faults: an idle minute
// raises no alert; a standby's WAL receiver frozen (SIGSTOP) under a black-box writer raises
// ReplicationStopped, which resolves after SIGCONT; a standby whose replay is delayed under a
// steady stream of WAL raises the lag trend alert no later than the lag level alert; a standby
// killed (its agent frozen so nothing restarts it) raises NodeUnreachable. Every transition is in
// the journal, `parley alerts --json` lists them, and the ops process's /metrics tells the same.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AlertListing } from '../src/ops/ops.ts';
import { cleanUp, cli, sleep, waitUntil, withParleyDatabase, type Up } from './harness.ts';
import { clusterHealthy, clusterStatus, postmasterChild, readJournal, startCluster } from './cluster.ts';
import { startWriter } from './writer.ts';

after(cleanUp);

type Listed = Pick<AlertListing, 'id' | 'name' | 'severity' | 'node' | 'status' | 'summary' | 'startsAt' | 'endsAt'>;


describe('monitoring on a three-node cluster', () => {
  let dir = '';
  let url = '';
  let up: Up;
  const ops = (): { url: string; token: string } => JSON.parse(readFileSync(join(dir, 'ops.json'), 'utf8')) as { url: string; token: string };
  const alerts = async (): Promise<Listed[]> => {
    const response = await fetch(`${ops().url}/v1/ops/alerts`, { signal: AbortSignal.timeout(5000) });
    assert.equal(response.status, 200);
    return ((await response.json()) as { alerts: Listed[] }).alerts;
  };
  const firing = async (name: string, node: string | null): Promise<Listed | undefined> =>
    (await alerts()).find((a) => a.name === name && a.node === node && a.status === 'firing');
  const alertJournal = () => readJournal(dir).filter((e) => e.kind === 'alert');

  before(async () => {
    ({ dir, url, up } = await startCluster());
  });

  test('an idle cluster raises no alert for a minute', async (t) => {
    // Right after start a standby may not be in the read pool yet; wait until nothing is pending or firing.
    await waitUntil('no alert pending or firing after start', async () => (await alerts()).every((a) => a.status === 'resolved'), 60_000);
    const before = alertJournal().length;
    await sleep(60_000);
    const raised = alertJournal().slice(before).filter((e) => e.event === 'firing' || e.event === 'pending');
    assert.deepEqual(raised, [], 'no alert went pending or fired on an idle cluster');
    const metrics = await (await fetch(`${ops().url}/metrics`)).text();
    // An idle primary: the heartbeat row keeps lag in seconds near one second, never growing.
    const lags = [...metrics.matchAll(/^parley_replication_lag_seconds\{node="(node\d)"\} (\S+)$/gm)].map((m) => Number(m[2]));
    assert.equal(lags.length, 2, metrics);
    for (const lag of lags) assert.ok(lag < 5, `idle lag ${lag} s`);
    t.diagnostic(`idle lag in seconds: ${lags.join(', ')}`);
  });

  test('a frozen WAL receiver under writes raises ReplicationStopped; it resolves after SIGCONT', async (t) => {
    const writer = await startWriter(url);
    await writer.waitForAcks(10, 30_000);
    const s = await clusterStatus(dir);
    const standby = s.nodes.find((n) => n.role === 'standby')!;
    const receiver = postmasterChild(standby.pid!, 'walreceiver');
    process.kill(receiver, 'SIGSTOP');
    const frozenAt = Date.now();
    let alert: Listed | undefined;
    try {
      await waitUntil(`ReplicationStopped fires for ${standby.name}`, async () => (alert = await firing('ReplicationStopped', standby.name)) !== undefined, 30_000);
      t.diagnostic(`ReplicationStopped listed ${Date.now() - frozenAt} ms after SIGSTOP: ${alert!.summary}`);
      assert.equal(alert!.severity, 'critical');
      assert.match(alert!.summary, new RegExp(`^${standby.name} is not replicating`));
      // The other standby is not affected.
      const other = s.nodes.find((n) => n.role === 'standby' && n.name !== standby.name)!;
      assert.equal(await firing('ReplicationStopped', other.name), undefined);
      // `parley alerts --json` lists it too.
      const listed = await cli(['alerts', '--json', '--dir', dir]);
      assert.equal(listed.code, 0, listed.stderr);
      assert.ok((JSON.parse(listed.stdout) as { alerts: Listed[] }).alerts.some((a) => a.id === alert!.id && a.status === 'firing'));
    } finally {
      process.kill(receiver, 'SIGCONT');
    }
    await waitUntil('ReplicationStopped resolves', async () => (await alerts()).some((a) => a.id === alert!.id && a.status === 'resolved'), 30_000);
    const report = await writer.stop();
    assert.ok(report.acked.length > 10);
    const events = alertJournal().filter((e) => e.id === alert!.id).map((e) => e.event);
    assert.deepEqual(events.slice(-3), ['pending', 'firing', 'resolved'], 'each transition is journaled');
  });

  test('a standby replaying late under a steady stream of WAL raises the trend alert, then the lag alert', async (t) => {
    await waitUntil('healthy', () => clusterHealthy(dir), 60_000);
    const s = await clusterStatus(dir);
    const slow = s.nodes.find((n) => n.role === 'standby')!;
    const port = (slow as unknown as { port: number }).port;
    const primaryPort = (s.nodes.find((n) => n.name === s.primary) as unknown as { port: number }).port;
    await withParleyDatabase(dir, port, async (client) => {
      await client.query("ALTER SYSTEM SET recovery_min_apply_delay = '120s'");
      await client.query('SELECT pg_reload_conf()');
    });
    // About half a MiB of WAL a second, steadily, so lag in bytes climbs on a straight line.
    let filling = true;
    const filler = withParleyDatabase(dir, primaryPort, async (client) => {
      await client.query('CREATE TABLE IF NOT EXISTS monitoring_filler (id bigserial PRIMARY KEY, pad text)');
      while (filling) {
        await client.query("INSERT INTO monitoring_filler (pad) SELECT repeat(md5(random()::text), 8) FROM generate_series(1, 400)");
        await sleep(250);
      }
    });
    try {
      await waitUntil(`ReplicationLagBytesHigh fires for ${slow.name}`, async () => (await firing('ReplicationLagBytesHigh', slow.name)) !== undefined, 90_000);
      const listed = await alerts();
      const trend = listed.find((a) => a.name === 'ReplicationLagGrowing' && a.node === slow.name && a.startsAt !== null);
      const level = listed.find((a) => a.name === 'ReplicationLagBytesHigh' && a.node === slow.name && a.status === 'firing')!;
      assert.ok(trend, `ReplicationLagGrowing fired for ${slow.name}: ${JSON.stringify(listed.map((a) => [a.name, a.node, a.status]))}`);
      assert.ok(Date.parse(trend.startsAt!) <= Date.parse(level.startsAt!), `trend (${trend.startsAt}) no later than level (${level.startsAt})`);
      t.diagnostic(`trend fired ${Date.parse(level.startsAt!) - Date.parse(trend.startsAt!)} ms before the level: ${trend.summary}`);
      await waitUntil(`ReplicationLagSecondsHigh fires for ${slow.name}`, async () => (await firing('ReplicationLagSecondsHigh', slow.name)) !== undefined, 30_000);
    } finally {
      filling = false;
      await filler;
      await withParleyDatabase(dir, port, async (client) => {
        await client.query('ALTER SYSTEM RESET recovery_min_apply_delay');
        await client.query('SELECT pg_reload_conf()');
      });
    }
    await waitUntil('the lag alerts resolve', async () => {
      const listed = await alerts();
      return !listed.some((a) => a.node === slow.name && a.status === 'firing' && a.name.startsWith('ReplicationLag'));
    }, 60_000);
  });

  test('a killed standby raises NodeUnreachable; it resolves once its agent starts it again', async (t) => {
    await waitUntil('healthy', () => clusterHealthy(dir), 60_000);
    const s = await clusterStatus(dir);
    const victim = s.nodes.find((n) => n.role === 'standby')!;
    // Freeze its agent first, so nothing restarts the server before the alert can fire.
    process.kill(victim.agentPid!, 'SIGSTOP');
    const killedAt = Date.now();
    try {
      process.kill(victim.pid!, 'SIGKILL');
      await waitUntil(`NodeUnreachable fires for ${victim.name}`, async () => (await firing('NodeUnreachable', victim.name)) !== undefined, 30_000);
      t.diagnostic(`NodeUnreachable listed ${Date.now() - killedAt} ms after the kill`);
      assert.ok(await firing('AgentNotReporting', victim.name), 'its frozen agent is reported too');
      const status = await cli(['status', '--dir', dir]);
      assert.match(status.stdout, /alerts firing \(\d+\):/);
      assert.match(status.stdout, new RegExp(`NodeUnreachable \\(${victim.name}\\)`));
    } finally {
      process.kill(victim.agentPid!, 'SIGCONT');
    }
    await waitUntil('healthy again', () => clusterHealthy(dir), 90_000);
    await waitUntil('NodeUnreachable resolves', async () => (await firing('NodeUnreachable', victim.name)) === undefined, 30_000);
  });
});
