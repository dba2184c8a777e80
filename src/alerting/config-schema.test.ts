// Proves the alerting section's schema and its check: an empty section is valid, API.md's example
// parses, and `checkAlertingConfig` refuses configurations where a critical alert would reach
// fewer than two independent channels, or where names point nowhere, naming the key each time.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { alertingConfigSchema, channelDependency, checkAlertingConfig, type AlertingConfigInput } from './config-schema.ts';

function problemsOf(input: AlertingConfigInput): string[] {
  return checkAlertingConfig(alertingConfigSchema.parse(input));
}

const mail = { name: 'mail', type: 'email' as const, smtp: { host: '127.0.0.1', port: 2525 }, from: 'parley@localhost', to: ['oncall@localhost'] };
const hook = { name: 'hook', type: 'webhook' as const, url: 'http://127.0.0.1:9099/alerts' };

test('an empty section is valid and every key has a default', () => {
  // Proves "no file is needed": the schema fills delivery, rota, policies, heartbeat and links.
  const config = alertingConfigSchema.parse(undefined);
  assert.deepEqual(config.channels, []);
  assert.equal(config.delivery.timeoutMs, 5000);
  assert.equal(config.rota.handoff.every, 'week');
  assert.deepEqual(config.policies.map((p) => p.name), ['critical', 'warning']);
  assert.equal(config.heartbeat.intervalMs, 60_000);
  assert.equal(config.ackSecret, '');
  assert.equal(alertingConfigSchema.parse({}).externalUrl, 'http://127.0.0.1:8080');
});

test("API.md's example (an SMTP channel and a webhook channel) is valid and safe", () => {
  // Proves the contract's keys parse and that two channels on different servers satisfy invariant 10.
  const config = alertingConfigSchema.parse({ channels: [mail, hook] });
  assert.equal(config.channels[0]!.type === 'email' && config.channels[0]!.smtp.secure, false);
  assert.deepEqual(checkAlertingConfig(config), []);
});

test('unknown keys and bad values are schema errors', () => {
  // Proves strictness: a typo is refused rather than silently ignored.
  assert.equal(alertingConfigSchema.safeParse({ channel: [] }).success, false);
  assert.equal(alertingConfigSchema.safeParse({ channels: [{ ...hook, url: 'ftp://x' }] }).success, false);
  assert.equal(alertingConfigSchema.safeParse({ ackSecret: 'short' }).success, false);
  assert.equal(alertingConfigSchema.safeParse({ rota: { handoff: { at: '9am' } } }).success, false);
  // API.md's key is `password`; nodemailer's own `pass` is a typo here, refused rather than ignored.
  assert.equal(alertingConfigSchema.safeParse({ channels: [{ ...mail, smtp: { host: 'x', port: 25, user: 'u', pass: 'p' } }] }).success, false);
  const withLogin = alertingConfigSchema.parse({ channels: [{ ...mail, smtp: { host: 'x', port: 587, user: 'u', password: 'p' } }] }).channels[0]!;
  assert.ok(withLogin.type === 'email' && withLogin.smtp.password === 'p');
});

test('no channel means alerting is off, not an error', () => {
  // Proves `npm start` works without a file: zero channels pass the check (config/'s lint warns instead).
  assert.deepEqual(problemsOf({}), []);
  assert.deepEqual(problemsOf({ policies: [{ name: 'w', severities: ['warning'], levels: [{ notify: ['on-call'] }] }] }), []);
});

test('a critical alert that would reach one channel is refused', () => {
  // Proves issue 8 point 2: with channels configured, config check refuses fewer than two for a critical alert.
  const one = problemsOf({ channels: [hook] });
  assert.equal(one.length, 2, one.join('\n')); // both levels of the default critical policy
  assert.match(one[0]!, /^alerting\.policies\.0\.levels\.0\.notify: a critical alert paged at this level reaches 1 independent channel \(hook\)/);
});

test('two channels through the same server count once', () => {
  // Proves "independent": two webhooks on one host, or two mailboxes on one relay, fail together.
  const twoHooks = problemsOf({ channels: [hook, { name: 'hook2', type: 'webhook', url: 'http://127.0.0.1:9099/other' }] });
  assert.match(twoHooks[0] ?? '', /reaches 1 independent channel \(hook, hook2\)/);
  const twoMailboxes = problemsOf({ channels: [mail, { ...mail, name: 'mail2', to: ['backup@localhost'] }] });
  assert.match(twoMailboxes[0] ?? '', /reaches 1 independent channel/);
  assert.notEqual(channelDependency(alertingConfigSchema.parse({ channels: [mail] }).channels[0]!), channelDependency(alertingConfigSchema.parse({ channels: [hook] }).channels[0]!));
});

test('a person of the rota reachable on one channel only is named', () => {
  // Proves the check tries everyone who could be on call, overrides included.
  const problems = problemsOf({
    channels: [mail, hook],
    rota: {
      people: [
        { name: 'alice', channels: ['mail', 'hook'] },
        { name: 'bob', channels: ['mail'] },
      ],
    },
  });
  assert.ok(problems.some((p) => /^alerting\.policies\.0\.levels\.0\.notify: .*\(bob on call\) reaches 1 independent channel \(mail\)/.test(p)), problems.join('\n'));
});

test('names that point nowhere are reported with their key', () => {
  // Proves unknown channels in the rota, unknown targets in policies, unknown people in overrides,
  // duplicates and reserved names are all caught.
  const problems = problemsOf({
    channels: [mail, hook, { ...hook, name: 'hook' }, { name: 'on-call', type: 'command', command: ['true'] }],
    rota: {
      people: [{ name: 'alice', channels: ['mail', 'sms'] }],
      overrides: [{ from: '2024-01-02T00:00:00Z', to: '2024-01-01T00:00:00Z', person: 'zed' }],
    },
    policies: [{ name: 'critical', levels: [{ notify: ['on-call', 'pager'] }] }],
    heartbeat: { channel: 'nope' },
    delivery: { backoffMs: 5000, maxBackoffMs: 1000 },
  });
  const expected = [
    'alerting.channels.2.name: duplicate name "hook"',
    'alerting.channels.3.name: "on-call" is reserved for escalation targets',
    'alerting.rota.people.0.channels.1: unknown channel "sms"',
    'alerting.rota.overrides.0.person: unknown person "zed"',
    'alerting.rota.overrides.0.to: must be after from (2024-01-02T00:00:00Z)',
    'alerting.policies.0.levels.0.notify.1: "pager" is neither on-call, next-on-call, a person of alerting.rota.people nor a channel',
    'alerting.heartbeat.channel: unknown channel "nope"',
    'alerting.delivery.backoffMs: must not exceed alerting.delivery.maxBackoffMs (1000)',
  ];
  for (const line of expected) assert.ok(problems.includes(line), `missing: ${line}\nin:\n${problems.join('\n')}`);
});

test('a configuration without any policy for critical alerts is refused', () => {
  // Proves that critical alerts cannot be configured into silence.
  const problems = problemsOf({ channels: [mail, hook], policies: [{ name: 'w', severities: ['warning'], levels: [{ notify: ['on-call'] }] }] });
  assert.deepEqual(problems, ['alerting.policies: no policy lists severity critical: a critical alert would page nobody']);
});

test('the complete example in docs/alerting.md is valid and passes the check', () => {
  // Proves the operator docs stay true: the example an operator copies works as printed.
  const doc = readFileSync(new URL('../../docs/alerting.md', import.meta.url), 'utf8');
  const block = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((text) => text.startsWith('alerting:'));
  assert.ok(block, 'docs/alerting.md has a yaml block starting with "alerting:"');
  const config = alertingConfigSchema.parse((parseYaml(block) as { alerting: unknown }).alerting);
  assert.deepEqual(checkAlertingConfig(config), []);
  assert.equal(config.rota.people.length, 2);
});
