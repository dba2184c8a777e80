// Proves issue 3's "Done when" as a new user would see it: the independent black-box client,
// written only from API.md, passes against a real `parley up`; and after `parley down` and
// `parley up` again, what was acknowledged is still there.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { freePort } from '../src/postgres/postgres.ts';
import { runBlackbox } from './blackbox/scenario.ts';
import { cleanUp, cli, makeDir, startUp, waitUntil, waitUp } from './harness.ts';

after(cleanUp);

async function json(url: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(url, { ...init, headers: { 'content-type': 'application/json', ...(init.headers ?? {}) }, signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

test('the black-box client passes against parley up, and data survives down and up', async () => {
  const dir = join(makeDir(), 'state');
  const port = await freePort();
  const pgPort = await freePort();
  const env = { PARLEY_POSTGRES_BASE_PORT: String(pgPort), PARLEY_CLUSTER_NODES: '1' };
  let up = startUp(dir, port, pgPort, env);
  await waitUp(up, dir);
  const url = `http://127.0.0.1:${port}`;

  const result = await runBlackbox(url);
  assert.deepEqual(result.failed, [], result.failed.map((f) => `${f.name}: ${f.error}`).join('\n'));
  assert.ok(result.passed.length >= 40, `only ${result.passed.length} checks ran`);

  // Something acknowledged before the restart...
  const username = `keep${randomUUID().slice(0, 8)}`;
  assert.equal((await json(`${url}/v1/accounts`, { method: 'POST', body: JSON.stringify({ username, password: 'long-enough' }) })).status, 201);
  const token = (await json(`${url}/v1/sessions`, { method: 'POST', body: JSON.stringify({ username, password: 'long-enough' }) })).body.token;
  const auth = { authorization: `Bearer ${token}` };
  const conversation = (await json(`${url}/v1/conversations`, { method: 'POST', headers: auth, body: JSON.stringify({ kind: 'group', members: [username], title: 'keep' }) })).body;
  const sent = await json(`${url}/v1/conversations/${conversation.id}/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ clientMessageId: randomUUID(), body: 'still here?' }) });
  assert.equal(sent.status, 201);

  const down = await cli(['down', '--dir', dir]);
  assert.equal(down.code, 0, down.stderr);
  await waitUntil('parley up has exited', async () => up.child.exitCode !== null);

  // ...is there after `up` again: the session too (state lives in DIR).
  up = startUp(dir, port, pgPort, env);
  await waitUp(up, dir);
  const history = await json(`${url}/v1/conversations/${conversation.id}/messages`, { headers: auth });
  assert.equal(history.status, 200);
  assert.deepEqual(history.body.messages.map((m: any) => [m.seq, m.body, m.id]), [[1, 'still here?', sent.body.message.id]]);
  assert.equal((await cli(['down', '--dir', dir])).code, 0);
});
