// Proves issue 8 end to end on a real three-node cluster under `parley up --config FILE` with an
// email channel (a real SMTP server, smtp-server) and a webhook channel (a real HTTP receiver):
// a frozen WAL receiver pages on both, the webhook body is a valid Alertmanager v4 payload with
// status firing; `parley alerts ack` stops escalation and is journaled; the resolution reaches
// both; unacknowledged, a page escalates from the first person to the next, and acknowledged in time
// it does not; with the SMTP server stopped the webhook still gets the page and the email follows once
// the server is back; the ops process killed with -9 is restarted and neither loses nor repeats
// the page it had sent; the ops process frozen makes the supervisor page AlertingSilent itself.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { alertmanagerV4Schema, createSmtpReceiver, startHttpReceiver, type HttpReceiver, type SmtpReceiver } from '../src/alerting/receivers-testing.ts';
import { freePort } from '../src/postgres/postgres.ts';
import { cleanUp, cli, freePortRun, makeDir, readStateFile, sleep, startUp, waitUntil, waitUp, type Up } from './harness.ts';
import { clusterHealthy, clusterStatus, postmasterChild, readJournal } from './cluster.ts';
import { startWriter } from './writer.ts';

interface Payload {
  status: string;
  alerts: Array<{ status: string; labels: Record<string, string>; annotations: Record<string, string> }>;
}


describe('paging through two channels from a running cluster', () => {
  let dir = '';
  let url = '';
  let up: Up;
  let smtp: SmtpReceiver;
  let hook: HttpReceiver;
  let hook2: HttpReceiver;
  let pagerFile = '';

  const pages = (name: string, node: string, status: string): Payload[] =>
    hook.items
      .map((r) => r.body as Payload)
      .filter((b) => b.alerts.some((a) => a.labels.alertname === name && a.labels.node === node && a.status === status));
  const mails = (name: string, node: string): number => smtp.items.filter((m) => m.raw.includes(name) && m.raw.includes(node)).length;
  const ops = (): { url: string; pid: number } => JSON.parse(readFileSync(join(dir, 'ops.json'), 'utf8')) as { url: string; pid: number };
  const listed = async (): Promise<Array<{ id: string; name: string; node: string | null; status: string; ack: { by: string } | null }>> =>
    ((await (await fetch(`${ops().url}/v1/ops/alerts`, { signal: AbortSignal.timeout(5000) })).json()) as { alerts: [] }).alerts;

  before(async () => {
    smtp = await createSmtpReceiver();
    await smtp.start();
    hook = await startHttpReceiver();
    hook2 = await startHttpReceiver();
    const base = makeDir();
    pagerFile = join(base, 'pager.jsonl');
    const configFile = join(base, 'parley.yaml');
    // API.md's keys: an email channel and a webhook channel, both on 127.0.0.1.
    writeFileSync(
      configFile,
      [
        'alerting:',
        '  channels:',
        `    - { name: mail, type: email, smtp: { host: 127.0.0.1, port: ${smtp.port} }, from: parley@localhost, to: [oncall@localhost] }`,
        `    - { name: hook, type: webhook, url: "${hook.url}/alerts" }`,
        `    - { name: hook2, type: webhook, url: "${hook2.url}/bob" }`,
        `    - { name: pager, type: command, command: [sh, -c, "cat >> ${pagerFile}"] }`,
        '  delivery: { backoffMs: 200, maxBackoffMs: 1000 }',
        // Two people, each with two independent channels; critical alerts page alice, then bob
        // if nobody acknowledged within 6 s (a fraction of a minute, for the test).
        '  rota:',
        '    people:',
        '      - { name: alice, channels: [mail, hook] }',
        '      - { name: bob, channels: [hook2, pager] }',
        '  policies:',
        '    - name: critical',
        '      severities: [critical]',
        '      levels:',
        '        - { afterMinutes: 0, notify: [alice] }',
        '        - { afterMinutes: 0.1, notify: [bob] }',
        '    - { name: others, severities: [warning, info], levels: [{ afterMinutes: 0, notify: [alice] }] }',
        '',
      ].join('\n'),
    );
    dir = join(base, 'state');
    const port = await freePort();
    up = startUp(dir, port, await freePortRun(3), { PARLEY_CLUSTER_NODES: '3', PARLEY_HTTP_RATE_LIMIT_PER_MINUTE: '1000000', PARLEY_OPS_SILENT_AFTER_MS: '4000' }, ['--config', configFile]);
    await waitUp(up, dir);
    url = `http://127.0.0.1:${port}`;
    await waitUntil('healthy', () => clusterHealthy(dir), 60_000);
  });

  after(async () => {
    await cleanUp();
    await hook?.close();
    await hook2?.close();
    await smtp?.stop();
  });

  test('a frozen WAL receiver pages on both channels; ack stops escalation; the resolution reaches both', async () => {
    const writer = await startWriter(url);
    await writer.waitForAcks(10, 30_000);
    const s = await clusterStatus(dir);
    const node = s.nodes.find((n) => n.role === 'standby')!;
    const receiver = postmasterChild(node.pid!, 'walreceiver');
    process.kill(receiver, 'SIGSTOP');
    try {
      await waitUntil('the webhook gets ReplicationStopped firing', () => pages('ReplicationStopped', node.name, 'firing').length > 0, 30_000);
      const body = pages('ReplicationStopped', node.name, 'firing')[0]!;
      alertmanagerV4Schema.parse(body);
      assert.equal(body.status, 'firing');
      const alert = body.alerts.find((a) => a.labels.alertname === 'ReplicationStopped')!;
      assert.equal(alert.labels.severity, 'critical');
      assert.match(alert.annotations.summary!, new RegExp(`^${node.name} is not replicating`));
      await waitUntil('the email arrives too', () => mails('ReplicationStopped', node.name) > 0, 30_000);
      const id = (await listed()).find((a) => a.name === 'ReplicationStopped' && a.node === node.name && a.status === 'firing')!.id;
      const acked = await cli(['alerts', 'ack', id, '--by', 'alice', '--dir', dir]);
      assert.equal(acked.code, 0, acked.stderr);
      assert.match(acked.stdout, /acknowledged by alice/);
      assert.equal((await listed()).find((a) => a.id === id)!.ack?.by, 'alice');
      assert.ok(readJournal(dir).some((e) => e.kind === 'alerting-ack' && e.alertId === id && e.by === 'alice'), 'the ack is journaled with who');
      const again = await cli(['alerts', 'ack', 'no-such-alert', '--dir', dir]);
      assert.equal(again.code, 1);
      assert.equal(again.stderr.trim().split('\n').length, 1, again.stderr);
    } finally {
      process.kill(receiver, 'SIGCONT');
    }
    await waitUntil('the resolution reaches the webhook', () => pages('ReplicationStopped', node.name, 'resolved').length > 0, 30_000);
    await waitUntil('and the mailbox', () => smtp.items.some((m) => /resolved/i.test(m.raw) && m.raw.includes('ReplicationStopped')), 30_000);
    await writer.stop();
  });

  test('unacknowledged, the page escalates from alice to bob; acknowledged, it stops', async () => {
    await waitUntil('healthy', () => clusterHealthy(dir), 60_000);
    const bobPages = (node: string): number => hook2.items.filter((r) => JSON.stringify(r.body).includes(`"node":"${node}"`) && (r.body as Payload).status === 'firing').length;
    const pagerLines = (): string[] => (existsSync(pagerFile) ? readFileSync(pagerFile, 'utf8') : '').split('\n').filter((l) => l.includes('ReplicationStopped'));
    const s = await clusterStatus(dir);
    const node = s.nodes.find((n) => n.role === 'standby')!;
    const before = bobPages(node.name);
    const pagerBefore = pagerLines().length;
    const pagesBefore = pages('ReplicationStopped', node.name, 'firing').length;
    const receiver = postmasterChild(node.pid!, 'walreceiver');
    process.kill(receiver, 'SIGSTOP');
    try {
      await waitUntil('alice is paged', () => pages('ReplicationStopped', node.name, 'firing').length > pagesBefore, 30_000);
      assert.equal(bobPages(node.name), before, 'bob is not paged at the first level');
      await waitUntil('nobody acknowledged: bob is paged on both of his channels', () => bobPages(node.name) > before && pagerLines().length > pagerBefore, 30_000);
      const notified = readJournal(dir).filter((e) => e.kind === 'alerting-notify' && e.person === 'bob' && e.level === 1);
      assert.ok(notified.length >= 1, 'the escalation to level 1 is journaled with the person');
      const id = (await listed()).find((a) => a.name === 'ReplicationStopped' && a.node === node.name && a.status === 'firing')!.id;
      const acked = await cli(['alerts', 'ack', id, '--by', 'bob', '--dir', dir]);
      assert.equal(acked.code, 0, acked.stderr);
    } finally {
      process.kill(receiver, 'SIGCONT');
    }
    await waitUntil('resolved to the people paged', () => pages('ReplicationStopped', node.name, 'resolved').length > 0 && hook2.items.some((r) => (r.body as Payload).status === 'resolved'), 30_000);

    // Acknowledged before the second level falls due: bob hears nothing.
    const other = s.nodes.filter((n) => n.role === 'standby').find((n) => n.name !== node.name)!;
    const bobBefore = bobPages(other.name);
    const otherReceiver = postmasterChild((await clusterStatus(dir)).nodes.find((n) => n.name === other.name)!.pid!, 'walreceiver');
    process.kill(otherReceiver, 'SIGSTOP');
    try {
      await waitUntil('alice is paged', () => pages('ReplicationStopped', other.name, 'firing').length > 0, 30_000);
      const id = (await listed()).find((a) => a.name === 'ReplicationStopped' && a.node === other.name && a.status === 'firing')!.id;
      const acked = await cli(['alerts', 'ack', id, '--by', 'alice', '--dir', dir]);
      assert.equal(acked.code, 0, acked.stderr);
      await sleep(9000);
      assert.equal(bobPages(other.name), bobBefore, 'acknowledged: no escalation to bob');
    } finally {
      process.kill(otherReceiver, 'SIGCONT');
    }
    await waitUntil('resolved', () => pages('ReplicationStopped', other.name, 'resolved').length > 0, 30_000);
  });

  test('with the SMTP server stopped the webhook still gets the page; the email follows once it is back', async (t) => {
    await waitUntil('healthy', () => clusterHealthy(dir), 60_000);
    await smtp.stop();
    const s = await clusterStatus(dir);
    const node = s.nodes.filter((n) => n.role === 'standby')[1]!;
    const mailsBefore = mails('ReplicationStopped', node.name);
    const pagesBefore = pages('ReplicationStopped', node.name, 'firing').length;
    const receiver = postmasterChild(node.pid!, 'walreceiver');
    process.kill(receiver, 'SIGSTOP');
    try {
      await waitUntil('the webhook gets the page', () => pages('ReplicationStopped', node.name, 'firing').length > pagesBefore, 30_000);
      const firing = (await listed()).find((a) => a.name === 'ReplicationStopped' && a.node === node.name && a.status === 'firing');
      assert.ok(firing);
      t.diagnostic('webhook delivered while SMTP was down');
      assert.equal(mails('ReplicationStopped', node.name), mailsBefore, 'no email while the server is down');
      await smtp.start();
      await waitUntil('the email is retried until the server is back', () => mails('ReplicationStopped', node.name) > mailsBefore, 60_000);
      // The ops process killed with -9: the supervisor restarts it; the page it sent is not sent again.
      const opsPid = ops().pid;
      const pagesSoFar = pages('ReplicationStopped', node.name, 'firing').length;
      process.kill(opsPid, 'SIGKILL');
      await waitUntil('the ops process is back', () => {
        try {
          return ops().pid !== opsPid;
        } catch {
          return false;
        }
      }, 30_000);
      await waitUntil('it lists the firing alert again', async () => (await listed()).some((a) => a.id === firing.id && a.status === 'firing'), 30_000);
      await sleep(5000);
      assert.equal(pages('ReplicationStopped', node.name, 'firing').length, pagesSoFar, 'no second page after the restart');
    } finally {
      process.kill(receiver, 'SIGCONT');
    }
    await waitUntil('resolved', () => pages('ReplicationStopped', node.name, 'resolved').length > 0, 30_000);
  });

  test('operators read the cluster, the alerts and the incidents through the app server; others get 401 or 403; the incident exports as a postmortem draft', async () => {
    const call = async (path: string, init: { method?: string; token?: string; body?: unknown } = {}) => {
      const response = await fetch(`${url}${path}`, {
        method: init.method ?? 'GET',
        headers: { ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) },
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
        signal: AbortSignal.timeout(10_000),
      });
      return { status: response.status, type: response.headers.get('content-type') ?? '', body: (await response.json().catch(() => undefined)) as any };
    };
    const signIn = async (username: string) => {
      await call('/v1/accounts', { method: 'POST', body: { username, password: 'long-enough' } });
      return (await call('/v1/sessions', { method: 'POST', body: { username, password: 'long-enough' } })).body.token as string;
    };
    const plain = await signIn('plainuser');
    const operator = await signIn('opsuser');
    const granted = await cli(['operator', 'add', 'opsuser', '--dir', dir]);
    assert.equal(granted.code, 0, granted.stderr);
    assert.equal((await call('/v1/ops/alerts')).status, 401);
    const forbidden = await call('/v1/ops/alerts', { token: plain });
    assert.equal(forbidden.status, 403);
    assert.match(forbidden.type, /application\/problem\+json/);
    const alerts = await call('/v1/ops/alerts', { token: operator });
    assert.equal(alerts.status, 200);
    const resolved = alerts.body.alerts.find((a: { name: string; status: string }) => a.name === 'ReplicationStopped' && a.status === 'resolved');
    assert.ok(resolved, 'the earlier episodes are listed');
    const cluster = await call('/v1/ops/cluster?minutes=1', { token: operator });
    assert.equal(cluster.status, 200);
    assert.equal(cluster.body.sample.nodes.length, 3);
    // The ops process was restarted by the test before (history is in memory): at most a minute of it.
    assert.ok(cluster.body.series.length >= 1 && cluster.body.series.length <= 61, `samples of the last minute: ${cluster.body.series.length}`);
    assert.equal((await call(`/v1/ops/alerts/${resolved.id}/ack`, { method: 'POST', token: plain })).status, 403);
    const acked = await call(`/v1/ops/alerts/${resolved.id}/ack`, { method: 'POST', token: operator });
    assert.equal(acked.status, 200);
    assert.ok(acked.body.by === 'opsuser' || acked.body.already === true, JSON.stringify(acked.body));

    // The journal read as incidents: the replication pages of the tests above are one incident,
    // with its pages and alice's acknowledgement, for the CLI, operators and (without names) the public.
    const listedIncidents = await cli(['incidents', '--json', '--dir', dir]);
    assert.equal(listedIncidents.code, 0, listedIncidents.stderr);
    const incident = (JSON.parse(listedIncidents.stdout) as { incidents: any[] }).incidents.find((i) => /^ReplicationStopped on node\d$/.test(i.title));
    assert.ok(incident, listedIncidents.stdout.slice(0, 2000));
    assert.ok(incident.firstPageAt !== null && Date.parse(incident.firstPageAt) >= Date.parse(incident.startedAt));
    assert.equal(incident.acknowledgedBy, 'alice');
    assert.ok(incident.timeline.some((item: { text: string }) => /^alice acknowledged ReplicationStopped/.test(item.text)), JSON.stringify(incident.timeline.slice(0, 20)));
    const exported = await cli(['incidents', 'export', incident.id, '--dir', dir]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /^Incident Postmortem Report: ReplicationStopped on node\d\nDate of Incident: /);
    assert.match(exported.stdout, /\nTimeline\n.*ReplicationStopped fired \(critical\)/);
    const unknown = await cli(['incidents', 'show', '20000101-000000', '--dir', dir]);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr.trim().split('\n').length, 1, unknown.stderr);
    const status = await call('/v1/status');
    assert.equal(status.status, 200);
    const shown = status.body.incidents.find((i: { id: string }) => i.id === incident.id);
    assert.deepEqual(shown && Object.keys(shown).sort(), ['endedAt', 'id', 'startedAt', 'state', 'title']);
    assert.equal(shown.title, 'ReplicationStopped', 'no node names on the public page');
    assert.equal((await call('/v1/ops/incidents', { token: plain })).status, 403);
    const forOperators = await call(`/v1/ops/incidents/${incident.id}`, { token: operator });
    assert.equal(forOperators.status, 200);
    assert.equal(forOperators.body.acknowledgedBy, 'alice');
  });

  test('a frozen ops process makes the supervisor page AlertingSilent on both channels', async () => {
    const opsPid = ops().pid;
    assert.equal(readStateFile(dir)?.ops?.pid, opsPid);
    process.kill(opsPid, 'SIGSTOP');
    try {
      await waitUntil('AlertingSilent at the webhook', () => pages('AlertingSilent', 'ops', 'firing').length > 0, 30_000);
      await waitUntil('AlertingSilent by email', () => mails('AlertingSilent', 'ops') > 0, 30_000);
      assert.match(up.output(), /ops: silent/);
    } finally {
      process.kill(opsPid, 'SIGCONT');
    }
    await waitUntil('its resolution once ops answers again', () => pages('AlertingSilent', 'ops', 'resolved').length > 0, 30_000);
    assert.ok(readJournal(dir).some((e) => e.kind === 'supervisor' && e.event === 'fallback alert firing'));
  });
});
