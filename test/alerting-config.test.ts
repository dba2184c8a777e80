// Proves issue 8 point 2 through the real `parley` command: `parley config check FILE` refuses a
// configuration where a critical alert would reach fewer than two independent channels, one line
// per problem naming the key, exit 1; `parley up --config FILE` refuses it with the same lines
// before it touches its state directory; API.md's example (an email and a webhook channel) passes;
// and no channel at all passes with a loud warning, so `npm start` keeps working without a file.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cleanUp, cli, makeDir } from './harness.ts';

after(cleanUp);

const dir = makeDir();

function file(name: string, yaml: string): string {
  const path = join(dir, name);
  writeFileSync(path, yaml);
  return path;
}

/** The problem lines of a run: stderr without the `parley: ` prefix and without warnings. */
function problems(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('parley: ') && !line.startsWith('parley: warning: '))
    .map((line) => line.slice('parley: '.length));
}

const oneChannel = file('one.yaml', 'alerting:\n  channels:\n    - { name: hook, type: webhook, url: "http://127.0.0.1:9099/alerts" }\n');

test('config check: one channel is refused, naming alerting.policies…', async () => {
  // Proves a lone channel is an error, not a warning: exit 1, each problem one line naming its key.
  const run = await cli(['config', 'check', oneChannel]);
  assert.equal(run.code, 1, run.stderr);
  const lines = problems(run.stderr);
  assert.ok(lines.length >= 1, run.stderr);
  for (const line of lines) assert.match(line, /^alerting\.policies\.0\.levels\.\d+\.notify: a critical alert paged at this level reaches 1 independent channel \(hook\)/);
  assert.doesNotMatch(run.stdout, /^ok/m);
});

test("config check: API.md's example, an email and a webhook channel, passes", async () => {
  // Proves the contract's keys (smtp.password included) and two independent channels are accepted.
  const example = file(
    'api-example.yaml',
    [
      'cluster:',
      '  nodes: 3',
      '  leaseTtlMs: 3000',
      '  failoverDeadlineMs: 30000',
      '  maximumLagOnFailoverBytes: 1048576',
      'alerting:',
      '  channels:',
      '    - { name: mail, type: email, smtp: { host: 127.0.0.1, port: 2525, user: parley, password: s3cret }, from: parley@localhost, to: [oncall@localhost] }',
      '    - { name: hook, type: webhook, url: "http://127.0.0.1:9099/alerts" }',
      '',
    ].join('\n'),
  );
  const run = await cli(['config', 'check', example]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(problems(run.stderr), []);
  assert.match(run.stdout, /^ok: /m);
});

test('config check: two webhooks on the same host and port count once and are refused', async () => {
  // Proves "independent": two paths on one receiver fail together.
  const twoHooks = file(
    'two-hooks.yaml',
    [
      'alerting:',
      '  channels:',
      '    - { name: hook, type: webhook, url: "http://127.0.0.1:9099/alerts" }',
      '    - { name: hook2, type: webhook, url: "http://127.0.0.1:9099/other" }',
      '',
    ].join('\n'),
  );
  const run = await cli(['config', 'check', twoHooks]);
  assert.equal(run.code, 1, run.stderr);
  assert.match(problems(run.stderr)[0] ?? '', /^alerting\.policies\.0\.levels\.0\.notify: .*reaches 1 independent channel \(hook, hook2\)/);
});

test('config check: no channel at all passes with a loud warning', async () => {
  // Proves alerting off is allowed (npm start needs no file) but never silent.
  const none = file('none.yaml', 'log:\n  level: info\n');
  const run = await cli(['config', 'check', none]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /^parley: warning: alerting\.channels: no alerting channel: ALERTING IS OFF/m);
});

test('up: refuses to start with the same lines as config check, before touching its directory', async () => {
  // Proves `parley up --config FILE` cannot run with one channel. PARLEY_POSTGRES_BIN points nowhere
  // so that, were the refusal missing, up would fail fast instead of starting a cluster.
  const state = join(dir, 'state');
  const check = await cli(['config', 'check', oneChannel]);
  const up = await cli(['up', '--dir', state, '--config', oneChannel], { PARLEY_POSTGRES_BIN: join(dir, 'no-such-bin') });
  assert.equal(up.code, 1, up.stderr);
  assert.deepEqual(problems(up.stderr), problems(check.stderr));
  assert.equal(existsSync(state), false, 'the state directory was not created');
  assert.doesNotMatch(up.stdout, /starting/);
});
