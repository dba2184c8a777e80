// The ops API without a cluster: a real ops process object (startOps) over a real local lease store
// with no nodes, a real webhook receiver as its only channel. What is checked: /metrics speaks the
// Prometheus text format, mutating routes need the token, an Alertmanager body pages through the
// webhook and is listed, an operator's ack and a signed link's ack (GET shows a button, POST acks)
// both stop escalation, and a restart keeps what was acknowledged.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ackLink } from '../alerting/alerting.ts';
import { startHttpReceiver, type HttpReceiver } from '../alerting/receivers-testing.ts';
import { configSchema } from '../config/config.ts';
import { createLocalLeaseClient, generateLeaseToken, startLocalLeaseServer, type LeaseStore, type LocalLeaseServer } from '../failover/failover.ts';
import { startOps, type Ops } from './ops.ts';

const secret = 'a-secret-of-sixteen-or-more';

describe('the ops API', () => {
  let dir = '';
  let lease: LocalLeaseServer;
  let store: LeaseStore;
  let hook: HttpReceiver;
  let ops: Ops;
  const token = 'test-token';

  const start = async (): Promise<Ops> => {
    const config = configSchema.parse({
      alerting: {
        channels: [
          { name: 'hook', type: 'webhook', url: `${hook.url}/alerts` },
          { name: 'hook2', type: 'command', command: ['true'] },
        ],
        ackSecret: secret,
      },
    });
    return startOps({
      nodes: [],
      appServers: [],
      lease: store,
      alerting: config.alerting,
      cluster: config.cluster,
      stateDir: join(dir, 'ops'),
      journalFile: join(dir, 'journal.jsonl'),
      host: '127.0.0.1',
      port: 0,
      token,
      sampleIntervalMs: 200,
      log: () => undefined,
    });
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'parley-ops-'));
    const leaseToken = generateLeaseToken();
    lease = await startLocalLeaseServer({ host: '127.0.0.1', port: 0, token: leaseToken, holdCreatesMs: 0 });
    store = createLocalLeaseClient({ url: lease.url, token: leaseToken, timeoutMs: 1000 });
    hook = await startHttpReceiver();
    ops = await start();
  });

  after(async () => {
    await ops?.close();
    await store?.close();
    await lease?.close();
    await hook?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const alertmanagerBody = {
    version: '4',
    groupKey: '{}:{alertname="DiskFull"}',
    truncatedAlerts: 0,
    status: 'firing',
    receiver: 'parley',
    groupLabels: { alertname: 'DiskFull' },
    commonLabels: { alertname: 'DiskFull' },
    commonAnnotations: {},
    externalURL: 'http://alertmanager.invalid',
    alerts: [
      {
        status: 'firing',
        labels: { alertname: 'DiskFull', severity: 'critical', instance: 'db7' },
        annotations: { summary: 'db7 has 1% of its disk free' },
        startsAt: new Date().toISOString(),
        endsAt: '0001-01-01T00:00:00Z',
        generatorURL: 'http://prometheus.invalid/graph',
        fingerprint: 'f00dfeedf00dfeed',
      },
    ],
  };

  test('/metrics answers in the Prometheus text format once the first sample is taken', async () => {
    let text = '';
    for (let i = 0; i < 50 && !text.includes('parley_sample_timestamp_seconds '); i++) {
      text = await (await fetch(`${ops.url}/metrics`)).text();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.match(text, /^# TYPE parley_sample_timestamp_seconds gauge$/m);
    assert.match(text, /^parley_failover_in_progress 0$/m, 'a one-store cluster with no nodes runs no failover');
    const cluster = (await (await fetch(`${ops.url}/v1/ops/cluster?minutes=1`)).json()) as { sample: { nodes: unknown[] } | null; series: unknown[] };
    assert.deepEqual(cluster.sample?.nodes, []);
    assert.ok(cluster.series.length >= 1);
  });

  test('the Alertmanager receiver needs the token, pages through the webhook and lists the alert', async () => {
    const refused = await fetch(`${ops.url}/v1/ops/alertmanager`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(alertmanagerBody) });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    const accepted = await fetch(`${ops.url}/v1/ops/alertmanager`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(alertmanagerBody),
    });
    assert.equal(accepted.status, 200, await accepted.clone().text());
    assert.deepEqual(await accepted.json(), { accepted: 1 });
    const page = await hook.waitFor((r) => JSON.stringify(r.body).includes('DiskFull'));
    assert.equal((page.body as { status: string }).status, 'firing');
    const wrongVersion = await fetch(`${ops.url}/v1/ops/alertmanager`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ ...alertmanagerBody, version: '3' }),
    });
    assert.equal(wrongVersion.status, 400);
    const { alerts } = (await (await fetch(`${ops.url}/v1/ops/alerts`)).json()) as { alerts: Array<{ id: string; name: string; source: string; status: string; pages: unknown[] }> };
    const listed = alerts.find((a) => a.name === 'DiskFull');
    assert.ok(listed);
    assert.equal(listed.source, 'alertmanager');
    assert.equal(listed.status, 'firing');
    assert.ok(listed.pages.length >= 1);
  });

  test('a signed link: GET shows a button and acknowledges nothing; POST acknowledges as the person', async () => {
    const { alerts } = (await (await fetch(`${ops.url}/v1/ops/alerts`)).json()) as { alerts: Array<{ id: string; name: string; ack: unknown }> };
    const id = alerts.find((a) => a.name === 'DiskFull')!.id;
    const link = ackLink(ops.url, { alertId: id, person: 'bob', expiresAtMs: Date.now() + 60_000 }, secret);
    const shown = await fetch(link);
    assert.equal(shown.status, 200);
    assert.match(await shown.text(), /<button type="submit">Acknowledge<\/button>/);
    const before = (await (await fetch(`${ops.url}/v1/ops/alerts`)).json()) as { alerts: Array<{ id: string; ack: unknown }> };
    assert.equal(before.alerts.find((a) => a.id === id)!.ack, null, 'opening the link acknowledged nothing');
    const forged = await fetch(link.replace('person=bob', 'person=mallory'), { method: 'POST' });
    assert.equal(forged.status >= 400 && forged.status < 500, true, `forged link answered ${forged.status}`);
    const posted = await fetch(link, { method: 'POST' });
    assert.equal(posted.status, 200);
    assert.match(await posted.text(), /Acknowledged .* as bob/);
    const afterAck = (await (await fetch(`${ops.url}/v1/ops/alerts`)).json()) as { alerts: Array<{ id: string; ack: { by: string } | null }> };
    assert.equal(afterAck.alerts.find((a) => a.id === id)!.ack?.by, 'bob');
    const journal = readFileSync(join(dir, 'journal.jsonl'), 'utf8');
    assert.match(journal, /"kind":"alerting-ack".*"by":"bob"/);
  });

  test('an operator ack needs the token; an unknown id is 404; the ack survives a restart', async () => {
    const { alerts } = (await (await fetch(`${ops.url}/v1/ops/alerts`)).json()) as { alerts: Array<{ id: string; name: string }> };
    const id = alerts.find((a) => a.name === 'DiskFull')!.id;
    const noToken = await fetch(`${ops.url}/v1/ops/alerts/${id}/ack`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"by":"eve"}' });
    assert.equal(noToken.status, 401);
    const unknown = await fetch(`${ops.url}/v1/ops/alerts/nope/ack`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: '{"by":"carol"}' });
    assert.equal(unknown.status, 404);
    const again = await fetch(`${ops.url}/v1/ops/alerts/${id}/ack`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: '{"by":"carol"}' });
    assert.equal(again.status, 200);
    assert.deepEqual({ ...((await again.json()) as object), at: undefined }, { id, by: 'bob', at: undefined, already: true }, 'the first ack stands');
    await ops.close();
    ops = await start();
    const restarted = (await (await fetch(`${ops.url}/v1/ops/alerts`)).json()) as { alerts: Array<{ id: string; ack: { by: string } | null }> };
    assert.equal(restarted.alerts.find((a) => a.id === id)?.ack?.by, 'bob');
  });
});
