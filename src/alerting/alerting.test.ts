// Proves issue 8's stories end to end through `createAlerting`, against a REAL SMTP server
// (smtp-server) and a REAL HTTP receiver on 127.0.0.1: a critical alert arrives on both; with the
// SMTP server down it still arrives by webhook and the email is retried until the server is back;
// unacknowledged it escalates to the next person, acknowledged it stops, resolved it tells the same
// people; a restart in the middle loses nothing and pages nobody twice; a signed ack link works and
// a tampered one does not; Alertmanager's webhook is accepted; the heartbeat goes out on schedule.
//
// Escalation time is driven by an injected clock and tick(now), never by waiting; receivers are
// awaited by event. Every server a test starts is closed by that test's `after`, pass or fail.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ParleyError } from '../errors/errors.ts';
import { alertingConfigSchema, checkAlertingConfig, createAlerting, parseAckLink, type Alert, type AlertingConfigInput, type AlertingEvent } from './alerting.ts';
import { alertmanagerV4Schema, createInbox, createSmtpReceiver, startHttpReceiver, type HttpReceiver, type SmtpReceiver } from './receivers-testing.ts';

const minute = 60_000;
/** Monday 2024-06-03 10:00 UTC: in week 22 of the default rota, so alice is on call, bob next. */
const start = Date.parse('2024-06-03T10:00:00Z');
const testTimeout = { timeout: 60_000 }; // a safety net against a hang, not a speed assertion

interface Rig {
  smtp: SmtpReceiver;
  http: HttpReceiver;
  dir: string;
  cleanup: (close: () => Promise<unknown>) => void;
  journal: ReturnType<typeof createInbox<AlertingEvent>>;
  clock: { now: number };
}

/**
 * Receivers and a state directory for one test. `cleanup` registers what to close; everything is
 * closed when the test ends, pass or fail, last registered first (alerting before its receivers
 * and its directory), and one failing close does not keep the others from running.
 */
async function startRig(t: TestContext, options: { smtpRunning: boolean }): Promise<Rig> {
  const closers: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    const outcomes = [];
    for (const close of closers.reverse()) outcomes.push(await close().then(() => undefined, (error: unknown) => error));
    const failure = outcomes.find((o) => o !== undefined);
    if (failure !== undefined) throw failure;
  });
  const cleanup = (close: () => Promise<unknown>): void => void closers.push(close);
  const dir = await mkdtemp(join(tmpdir(), 'parley-alerting-'));
  cleanup(() => rm(dir, { recursive: true, force: true }));
  const smtp = await createSmtpReceiver();
  cleanup(() => smtp.stop());
  if (options.smtpRunning) await smtp.start();
  const http = await startHttpReceiver();
  cleanup(() => http.close());
  return { smtp, http, dir, cleanup, journal: createInbox<AlertingEvent>(), clock: { now: start } };
}

/** API.md's two channels, with small delivery limits so retries are quick. */
function twoChannels(rig: Rig, extra: AlertingConfigInput = {}): AlertingConfigInput {
  return {
    channels: [
      { name: 'mail', type: 'email', smtp: { host: '127.0.0.1', port: rig.smtp.port }, from: 'parley@localhost', to: ['oncall@localhost'] },
      { name: 'hook', type: 'webhook', url: `${rig.http.url}/alerts` },
    ],
    delivery: { timeoutMs: 5000, retries: 1000, backoffMs: 5, maxBackoffMs: 50 },
    ackSecret: 'test-ack-secret-0123456789',
    ...extra,
  };
}

/** Two people, each with their own mailbox and webhook path, escalating on-call → next-on-call. */
function rotaConfig(rig: Rig): AlertingConfigInput {
  return twoChannels(rig, {
    channels: [
      { name: 'alice-mail', type: 'email', smtp: { host: '127.0.0.1', port: rig.smtp.port }, to: ['alice@localhost'] },
      { name: 'alice-hook', type: 'webhook', url: `${rig.http.url}/alice` },
      { name: 'bob-mail', type: 'email', smtp: { host: '127.0.0.1', port: rig.smtp.port }, to: ['bob@localhost'] },
      { name: 'bob-hook', type: 'webhook', url: `${rig.http.url}/bob` },
    ],
    rota: {
      people: [
        { name: 'alice', channels: ['alice-mail', 'alice-hook'] },
        { name: 'bob', channels: ['bob-mail', 'bob-hook'] },
      ],
    },
    policies: [
      {
        name: 'critical',
        severities: ['critical'],
        levels: [
          { afterMinutes: 0, notify: ['on-call'] },
          { afterMinutes: 5, notify: ['next-on-call'] },
        ],
        repeat: { times: 2, afterMinutes: 10 },
      },
    ],
  });
}

async function open(rig: Rig, input: AlertingConfigInput) {
  const config = alertingConfigSchema.parse(input);
  assert.deepEqual(checkAlertingConfig(config), [], 'the test configuration itself must pass the check');
  return createAlerting({ config, stateDir: rig.dir, journal: (event) => rig.journal.push(event), now: () => rig.clock.now });
}

function critical(overrides: Partial<Alert> = {}): Alert {
  return {
    id: 'c0ffee0000000001',
    name: 'ReplicationStopped',
    severity: 'critical',
    node: 'node2',
    summary: 'node2 has not replayed WAL from node1 for 12 s',
    startsAt: new Date(start).toISOString(),
    status: 'firing',
    ...overrides,
  };
}

function bodies(http: HttpReceiver, path: string) {
  return http.items.filter((r) => r.path === path).map((r) => alertmanagerV4Schema.parse(r.body));
}

test('a critical alert arrives by email and by webhook, the webhook body a valid Alertmanager v4 payload', testTimeout, async (t) => {
  // Proves invariant 10's first half with real receivers, and API.md's webhook payload.
  const rig = await startRig(t, { smtpRunning: true });
  const alerting = await open(rig, twoChannels(rig));
  rig.cleanup(() => alerting.close());
  const report = await alerting.onTransition(critical());
  assert.deepEqual(report.notified.map((n) => n.channels), [['mail', 'hook']]);
  const [request, mail] = await Promise.all([rig.http.waitFor((r) => r.path === '/alerts'), rig.smtp.waitFor()]);
  const body = alertmanagerV4Schema.parse(request.body);
  assert.equal(body.status, 'firing');
  assert.equal(body.alerts[0]!.labels.alertname, 'ReplicationStopped');
  assert.equal(body.alerts[0]!.labels.severity, 'critical');
  assert.equal(body.alerts[0]!.labels.node, 'node2');
  assert.equal(body.alerts[0]!.annotations.summary, 'node2 has not replayed WAL from node1 for 12 s');
  assert.equal(body.alerts[0]!.fingerprint, 'c0ffee0000000001');
  assert.deepEqual(mail.to, ['oncall@localhost']);
  assert.match(mail.raw, /Subject: \[CRITICAL\] FIRING: ReplicationStopped on node2/);
  await alerting.idle();
  assert.deepEqual(alerting.list()[0]!.deliveries.map((d) => [d.channel, d.status]), [
    ['mail', 'delivered'],
    ['hook', 'delivered'],
  ]);
});

test('with the SMTP server down the webhook still gets the alert, and the email is retried until the server is back', testTimeout, async (t) => {
  // Proves one down channel never delays another, and that email retries until it gets through.
  const rig = await startRig(t, { smtpRunning: false });
  const alerting = await open(rig, twoChannels(rig));
  rig.cleanup(() => alerting.close());
  await alerting.onTransition(critical());
  await rig.http.waitFor((r) => r.path === '/alerts');
  await rig.journal.waitFor((e) => e.kind === 'attempt' && e.channel === 'hook' && e.ok);
  await rig.journal.waitFor((e) => e.kind === 'attempt' && e.channel === 'mail' && !e.ok);
  assert.equal(rig.smtp.items.length, 0); // the webhook did not wait for the email

  await rig.smtp.start(); // the relay comes back on the same port
  const mail = await rig.smtp.waitFor();
  assert.match(mail.raw, /X-Parley-Alert: c0ffee0000000001/);
  await alerting.idle();
  const attempts = rig.journal.items.filter((e): e is Extract<AlertingEvent, { kind: 'attempt' }> => e.kind === 'attempt' && e.channel === 'mail');
  assert.ok(attempts.length >= 2);
  assert.deepEqual(attempts.map((a) => a.ok), [...attempts.slice(0, -1).map(() => false), true]);
  assert.deepEqual(attempts.map((a) => a.attempt), attempts.map((_, i) => i + 1));
  assert.equal(bodies(rig.http, '/alerts').length, 1, 'the webhook got the page exactly once');
  assert.equal(rig.smtp.items.length, 1);
  assert.deepEqual(alerting.list()[0]!.deliveries.map((d) => [d.channel, d.status]), [
    ['mail', 'delivered'],
    ['hook', 'delivered'],
  ]);
});

test('unacknowledged, the alert escalates to the next person; acknowledged, it stops; resolved, both are told', testTimeout, async (t) => {
  // Proves issue 8 points 3 and 4 through real channels, time driven by tick(now).
  const rig = await startRig(t, { smtpRunning: true });
  const alerting = await open(rig, rotaConfig(rig));
  rig.cleanup(() => alerting.close());
  await alerting.onTransition(critical());
  await alerting.idle();
  assert.equal(bodies(rig.http, '/alice').length, 1);
  assert.equal(bodies(rig.http, '/bob').length, 0);
  assert.deepEqual(rig.smtp.items.map((m) => m.to), [['alice@localhost']]);

  const early = await alerting.tick(start + 4 * minute);
  assert.deepEqual(early.steps.flatMap((s) => s.notified), []);
  const escalated = await alerting.tick(start + 5 * minute);
  assert.deepEqual(escalated.steps.flatMap((s) => s.notified.map((n) => [n.person, n.level])), [['bob', 1]]);
  await alerting.idle();
  assert.equal(bodies(rig.http, '/bob').length, 1);
  assert.equal(bodies(rig.http, '/bob')[0]!.alerts[0]!.annotations.escalationLevel, '2');
  assert.ok(rig.smtp.items.some((m) => m.to.includes('bob@localhost')));

  rig.clock.now = start + 6 * minute;
  const acked = await alerting.ack('c0ffee0000000001', 'bob');
  assert.deepEqual(acked.ack, { by: 'bob', atMs: start + 6 * minute });
  assert.ok(rig.journal.items.some((e) => e.kind === 'ack' && e.by === 'bob' && e.atMs === start + 6 * minute));
  // Without the ack, alice would be paged again at +15 and bob at +20 (repeat).
  for (const at of [15, 20, 60]) {
    const report = await alerting.tick(start + at * minute);
    assert.deepEqual(report.steps.flatMap((s) => s.notified), []);
  }
  await alerting.idle();
  assert.equal(bodies(rig.http, '/alice').length, 1);
  assert.equal(bodies(rig.http, '/bob').length, 1);
  assert.equal((await alerting.ack('c0ffee0000000001', 'alice')).already, true);

  rig.clock.now = start + 70 * minute;
  const resolved = await alerting.onTransition(critical({ status: 'resolved' }));
  assert.deepEqual(resolved.notified.map((n) => [n.kind, n.person]), [
    ['resolved', 'alice'],
    ['resolved', 'bob'],
  ]);
  await alerting.idle();
  for (const person of ['alice', 'bob']) {
    const last = bodies(rig.http, `/${person}`).at(-1)!;
    assert.equal(last.status, 'resolved');
    assert.equal(last.alerts[0]!.endsAt, new Date(start + 70 * minute).toISOString());
  }
  assert.equal(rig.smtp.items.filter((m) => /RESOLVED/.test(m.raw)).length, 2);
});

test('a restart in the middle loses no page and sends none twice', testTimeout, async (t) => {
  // Proves issue 8 point 5: the email pending at the restart goes out after it, the webhook page
  // delivered before it is not sent again, and escalation goes on from where it was.
  const rig = await startRig(t, { smtpRunning: false });
  const first = await open(rig, twoChannels(rig));
  rig.cleanup(() => first.close());
  await first.onTransition(critical());
  await rig.journal.waitFor((e) => e.kind === 'attempt' && e.channel === 'hook' && e.ok);
  await rig.journal.waitFor((e) => e.kind === 'attempt' && e.channel === 'mail' && !e.ok);
  await first.close(); // the process goes away with the email still undelivered

  const second = await open(rig, twoChannels(rig));
  rig.cleanup(() => second.close());
  assert.deepEqual(second.list()[0]!.deliveries.map((d) => [d.channel, d.status]), [
    ['mail', 'pending'],
    ['hook', 'delivered'],
  ]);
  await rig.smtp.start();
  const resumed = await second.tick(start); // the same moment: nothing new is decided
  assert.deepEqual(resumed.steps.flatMap((s) => s.notified), []);
  assert.equal(resumed.retried, 1);
  await rig.smtp.waitFor();
  await second.idle();
  assert.equal(bodies(rig.http, '/alerts').length, 1);
  assert.equal(rig.smtp.items.length, 1);

  const next = await second.tick(start + 5 * minute); // the default policy's second level
  assert.deepEqual(next.steps.flatMap((s) => s.notified.map((n) => n.level)), [1]);
  await second.idle();
  assert.deepEqual(bodies(rig.http, '/alerts').map((b) => b.alerts[0]!.annotations.escalationLevel), ['1', '2']);
  assert.equal(rig.smtp.items.length, 2);
});

test('a signed ack link from the page acknowledges as the person paged; a tampered one is refused', testTimeout, async (t) => {
  // Proves issue 8 point 4's signed link end to end: from the webhook body back to an ack.
  const rig = await startRig(t, { smtpRunning: true });
  const alerting = await open(rig, rotaConfig(rig));
  rig.cleanup(() => alerting.close());
  await alerting.onTransition(critical());
  const page = alertmanagerV4Schema.parse((await rig.http.waitFor((r) => r.path === '/alice')).body);
  const link = page.alerts[0]!.annotations.ackUrl!;
  assert.match(link, /^http:\/\/127\.0\.0\.1:8080\/v1\/ops\/alerts\/c0ffee0000000001\/ack\?/);

  const tampered = parseAckLink(link.replace('person=alice', 'person=bob'))!;
  await assert.rejects(alerting.ackWithLink(tampered), (error: unknown) => error instanceof ParleyError && error.code === 'forbidden');
  assert.equal(alerting.list()[0]!.ack, undefined);

  const report = await alerting.ackWithLink(parseAckLink(link)!);
  assert.equal(report.ack.by, 'alice');
  assert.ok(rig.journal.items.some((e) => e.kind === 'ack' && e.by === 'alice' && e.via === 'link'));
  rig.clock.now = start + 25 * 3_600_000; // past the link's 24 h
  await assert.rejects(alerting.ackWithLink(parseAckLink(link)!), /has expired/);
});

test("an Alertmanager webhook body is taken as alerts: firing pages, resolved tells, garbage is refused", testTimeout, async (t) => {
  // Proves issue 8 point 7: teams on Prometheus put Parley's escalation behind their own rules.
  const rig = await startRig(t, { smtpRunning: true });
  const alerting = await open(rig, twoChannels(rig));
  rig.cleanup(() => alerting.close());
  const alert = {
    status: 'firing',
    labels: { alertname: 'DiskFull', severity: 'critical', instance: 'db1:9100' },
    annotations: { summary: 'disk of db1 is 97% full' },
    startsAt: '2024-06-03T09:58:00.123456789Z',
    endsAt: '0001-01-01T00:00:00Z',
    generatorURL: 'http://prometheus:9090/graph',
    fingerprint: 'aaaabbbbccccdddd',
  };
  const body = { version: '4', groupKey: '{}:{alertname="DiskFull"}', truncatedAlerts: 0, status: 'firing', receiver: 'parley', groupLabels: {}, commonLabels: {}, commonAnnotations: {}, externalURL: 'http://am:9093', alerts: [alert] };
  const taken = await alerting.receiveAlertmanager(body);
  assert.equal(taken.accepted, 1);
  const page = alertmanagerV4Schema.parse((await rig.http.waitFor((r) => r.path === '/alerts')).body);
  assert.equal(page.alerts[0]!.fingerprint, 'aaaabbbbccccdddd');
  assert.equal(page.alerts[0]!.labels.node, 'db1:9100');
  assert.equal(page.alerts[0]!.annotations.summary, 'disk of db1 is 97% full');

  await alerting.receiveAlertmanager(body); // Alertmanager repeats itself: no second page
  await alerting.receiveAlertmanager({ ...body, status: 'resolved', alerts: [{ ...alert, status: 'resolved', endsAt: '2024-06-03T10:05:00Z' }] });
  await alerting.idle();
  assert.deepEqual(bodies(rig.http, '/alerts').map((b) => b.status), ['firing', 'resolved']);
  await assert.rejects(alerting.receiveAlertmanager({ version: '3', alerts: [] }), (error: unknown) => error instanceof ParleyError && error.code === 'validation_failed');
});

test('the heartbeat goes to its receiver every intervalMs and not more often', testTimeout, async (t) => {
  // Proves issue 8 point 6's first half: a dead-man's switch hears from the alerting path on schedule.
  const rig = await startRig(t, { smtpRunning: true });
  const alerting = await open(rig, twoChannels(rig, { heartbeat: { url: `${rig.http.url}/heartbeat`, intervalMs: 60_000 } }));
  rig.cleanup(() => alerting.close());
  assert.equal((await alerting.heartbeat(start)).ok, true);
  assert.equal((await alerting.heartbeat(start + 59_999)).sent, false);
  assert.equal((await alerting.heartbeat(start + 60_000)).ok, true);
  const beats = rig.http.items.filter((r) => r.path === '/heartbeat');
  assert.equal(beats.length, 2);
  assert.deepEqual(beats[0]!.body, { status: 'ok', source: 'parley-alerting', sentAt: new Date(start).toISOString(), summary: (beats[0]!.body as { summary: string }).summary });
  assert.ok(rig.journal.items.filter((e) => e.kind === 'heartbeat' && e.ok).length === 2);

  rig.http.status = 503;
  const failed = await alerting.heartbeat(start + 120_000);
  assert.deepEqual([failed.sent, failed.ok], [true, false]);
  assert.ok(rig.journal.items.some((e) => e.kind === 'heartbeat' && !e.ok));
});

test('a heartbeat channel receives a Watchdog alert in the Alertmanager format', testTimeout, async (t) => {
  // Proves the channel form of the heartbeat, which a receiver built for Alertmanager's Watchdog understands.
  const rig = await startRig(t, { smtpRunning: true });
  const alerting = await open(rig, twoChannels(rig, { heartbeat: { channel: 'hook' } }));
  rig.cleanup(() => alerting.close());
  assert.equal((await alerting.heartbeat(start)).ok, true);
  const body = alertmanagerV4Schema.parse((await rig.http.waitFor((r) => r.path === '/alerts')).body);
  assert.equal(body.alerts[0]!.labels.alertname, 'Watchdog');
  assert.equal(body.status, 'firing');
});

test('an alert with extra fields or an overlong summary still pages; one that cannot be handled is refused', testTimeout, async (t) => {
  // Proves onTransition's leniency: an alert is refused only when it cannot be handled at all.
  const rig = await startRig(t, { smtpRunning: true });
  const alerting = await open(rig, twoChannels(rig));
  rig.cleanup(() => alerting.close());
  const sloppy = { ...critical(), value: 42, summary: 'x'.repeat(10_000) } as Alert;
  const report = await alerting.onTransition(sloppy);
  assert.equal(report.notified.length, 1);
  assert.equal(alerting.list()[0]!.alert.summary.length, 4000);
  await assert.rejects(alerting.onTransition({ ...critical(), id: '' }), (error: unknown) => error instanceof ParleyError && error.code === 'validation_failed');
  await assert.rejects(alerting.onTransition({ ...critical({ id: 'other' }), severity: 'loud' as Alert['severity'] }), /severity/);
  await alerting.idle();
});
