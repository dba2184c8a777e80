// Proves each channel against a real receiver: the webhook POSTs a valid Alertmanager v4 body to a
// real HTTP server, email reaches a real SMTP server (smtp-server), and the command channel hands
// the notice as JSON on stdin to a real program (`node -e`), a non-zero exit being a failure.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { alertmanagerPayload, createSender, emailMessage } from './channels.ts';
import { alertingConfigSchema } from './config-schema.ts';
import { alertmanagerV4Schema, createSmtpReceiver, startHttpReceiver, type HttpReceiver, type SmtpReceiver } from './receivers-testing.ts';
import type { Notice } from './types.ts';

const notice: Notice = {
  kind: 'page',
  key: 'page:0:0:alice',
  alert: {
    id: '5d41402abc4b2a76',
    name: 'ReplicationStopped',
    severity: 'critical',
    node: 'node2',
    summary: 'node2 stopped replaying WAL\nfrom node1 30 s ago',
    startsAt: '2024-06-03T10:00:00.000Z',
    status: 'firing',
    labels: { job: 'parley', severity: 'ignored' },
  },
  level: 0,
  person: 'alice',
  ackUrl: 'http://127.0.0.1:8080/v1/ops/alerts/5d41402abc4b2a76/ack?person=alice&expires=1&signature=x',
  externalUrl: 'http://127.0.0.1:8080',
};

let http: HttpReceiver;
let smtp: SmtpReceiver;
let dir: string;
before(async () => {
  http = await startHttpReceiver();
  smtp = await createSmtpReceiver();
  await smtp.start();
  dir = await mkdtemp(join(tmpdir(), 'parley-alerting-channels-'));
});
after(async () => {
  await http?.close();
  await smtp?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function channel(input: unknown) {
  return alertingConfigSchema.parse({ channels: [input] }).channels[0]!;
}

const signal = new AbortController().signal;

test('the webhook channel POSTs a valid Alertmanager v4 body', async () => {
  // Proves API.md's payload on the wire: firing, labels always set (ours win), summary one line, ack link.
  const sender = createSender(channel({ name: 'hook', type: 'webhook', url: `${http.url}/alerts` }), { timeoutMs: 2000 });
  await sender.send(notice, signal);
  const request = await http.waitFor((r) => r.path === '/alerts');
  const body = alertmanagerV4Schema.parse(request.body);
  assert.equal(body.status, 'firing');
  assert.equal(body.receiver, 'hook');
  const [alert] = body.alerts;
  assert.deepEqual(alert!.labels, { job: 'parley', severity: 'critical', alertname: 'ReplicationStopped', node: 'node2' });
  assert.equal(alert!.annotations.summary, 'node2 stopped replaying WAL from node1 30 s ago');
  assert.equal(alert!.annotations.ackUrl, notice.ackUrl);
  assert.equal(alert!.endsAt, '0001-01-01T00:00:00Z');
  assert.equal(alert!.fingerprint, notice.alert.id);
  assert.equal(alert!.generatorURL, 'http://127.0.0.1:8080/v1/ops/alerts/5d41402abc4b2a76');
});

test('a resolved notice is status resolved with endsAt, and carries no ack link', () => {
  // Proves the resolved shape receivers rely on to close their own incident.
  const resolved = alertmanagerPayload({ ...notice, kind: 'resolved', alert: { ...notice.alert, status: 'resolved', endsAt: '2024-06-03T10:20:00.000Z' } }, 'hook');
  const body = alertmanagerV4Schema.parse(resolved);
  assert.equal(body.status, 'resolved');
  assert.equal(body.alerts[0]!.endsAt, '2024-06-03T10:20:00.000Z');
  assert.equal(body.alerts[0]!.annotations.ackUrl, undefined);
});

test('a webhook receiver answering 500 is a failed attempt', async () => {
  // Proves a non-2xx answer is not taken for a delivery.
  const sender = createSender(channel({ name: 'hook', type: 'webhook', url: `${http.url}/broken` }), { timeoutMs: 2000 });
  http.status = 500;
  try {
    await assert.rejects(sender.send(notice, signal), /answered 500/);
  } finally {
    http.status = 200;
  }
});

test('the email channel delivers through a real SMTP server', async () => {
  // Proves nodemailer against smtp-server: envelope, subject and the ack link in the body.
  const sender = createSender(channel({ name: 'mail', type: 'email', smtp: { host: '127.0.0.1', port: smtp.port }, from: 'parley@localhost', to: ['alice@localhost'] }), { timeoutMs: 2000 });
  await sender.send(notice, signal);
  const mail = await smtp.waitFor((m) => m.raw.includes('X-Parley-Alert: 5d41402abc4b2a76'));
  assert.deepEqual(mail.to, ['alice@localhost']);
  assert.equal(mail.from, 'parley@localhost');
  assert.match(mail.raw, /Subject: \[CRITICAL\] FIRING: ReplicationStopped on node2/);
  const { text } = emailMessage(notice);
  assert.match(text, /Acknowledge \(stops the escalation\):\n.*\/ack\?person=alice/);
});

test('the email channel logs in with smtp.user and smtp.password (API.md\'s keys)', async () => {
  // Proves `password` reaches the SMTP server's AUTH: a relay that requires a login accepts the page.
  const logins: { username: string; password: string }[] = [];
  const relay = new SMTPServer({
    allowInsecureAuth: true, // no TLS on 127.0.0.1 in a test; nodemailer sends AUTH PLAIN in the clear
    disabledCommands: ['STARTTLS'],
    authMethods: ['PLAIN', 'LOGIN'],
    logger: false,
    onAuth(auth, _session, callback) {
      logins.push({ username: auth.username ?? '', password: auth.password ?? '' });
      if (auth.username === 'parley' && auth.password === 's3cret') callback(null, { user: 'parley' });
      else callback(new Error('535 bad login'));
    },
    onData(stream, _session, callback) {
      stream.resume().on('end', () => callback());
    },
  });
  await new Promise<void>((resolve, reject) => {
    relay.server.once('error', reject);
    relay.listen(0, '127.0.0.1', () => resolve());
  });
  try {
    const { port } = relay.server.address() as { port: number };
    const mail = (password: string) =>
      createSender(channel({ name: 'mail', type: 'email', smtp: { host: '127.0.0.1', port, user: 'parley', password }, from: 'parley@localhost', to: ['alice@localhost'] }), { timeoutMs: 2000 });
    await mail('s3cret').send(notice, signal);
    await assert.rejects(mail('wrong').send(notice, signal), /535|auth/i);
    assert.deepEqual(logins, [
      { username: 'parley', password: 's3cret' },
      { username: 'parley', password: 'wrong' },
    ]);
  } finally {
    await new Promise<void>((resolve) => relay.close(() => resolve()));
  }
});

test('the command channel gives the notice as JSON on stdin to a real program', async () => {
  // Proves the argv (no shell) and the stdin contract an SMS gateway script reads.
  const out = join(dir, 'stdin.json');
  const script = "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>require('fs').writeFileSync(process.argv[1],s))";
  const sender = createSender(channel({ name: 'sms', type: 'command', command: [process.execPath, '-e', script, out] }), { timeoutMs: 5000 });
  await sender.send(notice, signal);
  const input = JSON.parse(await readFile(out, 'utf8'));
  assert.equal(input.kind, 'page');
  assert.equal(input.status, 'firing');
  assert.equal(input.person, 'alice');
  assert.equal(input.alert.id, notice.alert.id);
  assert.equal(input.alert.labels.alertname, 'ReplicationStopped');
  assert.equal(input.ackUrl, notice.ackUrl);
  assert.equal(input.text, 'CRITICAL ReplicationStopped on node2: node2 stopped replaying WAL from node1 30 s ago');
});

test('a command that exits non-zero, or cannot start, is a failed attempt naming why', async () => {
  // Proves failure reporting: exit code and stderr, or the spawn error.
  const failing = createSender(channel({ name: 'sms', type: 'command', command: [process.execPath, '-e', "console.error('gateway refused');process.exit(3)"] }), { timeoutMs: 5000 });
  await assert.rejects(failing.send(notice, signal), /command "sms" exited with 3: gateway refused/);
  const missing = createSender(channel({ name: 'sms', type: 'command', command: [join(dir, 'no-such-program')] }), { timeoutMs: 5000 });
  await assert.rejects(missing.send(notice, signal), /command "sms" .* failed to run: .*ENOENT/);
});

test('a command still running when its attempt is aborted is killed', async () => {
  // Proves no program outlives its attempt: the abort kills it and the attempt fails.
  const hung = createSender(channel({ name: 'sms', type: 'command', command: [process.execPath, '-e', 'setInterval(() => {}, 1000)'] }), { timeoutMs: 5000 });
  const controller = new AbortController();
  const sending = hung.send(notice, controller.signal);
  controller.abort();
  await assert.rejects(sending, /failed to run: .*abort/i);
});
