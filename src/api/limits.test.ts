// Proves the limits answer as API.md says: per-account rate limits give 429 with Retry-After (also
// for WebSocket frames), sign-ins are limited per address, and an expired or signed-out session is a 401.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import pg from 'pg';
import WebSocket from 'ws';
import { httpClient, startTestApp, type TestApp } from './testing.ts';

let t: TestApp;
let http: ReturnType<typeof httpClient>;

before(async () => {
  t = await startTestApp({ http: { rateLimitPerMinute: 8 } });
  http = httpClient(t.url);
});
after(async () => {
  await t?.stop();
});

test('an account over its rate gets 429 with Retry-After; another account is unaffected', async () => {
  // Sign-up and sign-in of two accounts take 4 of this address's 8 anonymous calls.
  const a = await http.signUp('rl');
  const b = await http.signUp('rl');
  const answers = [];
  for (let i = 0; i < 10; i++) answers.push(await http.get('/v1/me', a.token));
  const limited = answers.filter((x) => x.status === 429);
  assert.ok(limited.length >= 2, `statuses ${answers.map((x) => x.status)}`);
  assert.equal(answers.filter((x) => x.status === 200).length, 8);
  assert.equal(limited[0]!.body.code, 'rate_limited');
  assert.ok(Number(limited[0]!.headers.get('retry-after')) >= 1);
  assert.equal((await http.get('/v1/me', b.token)).status, 200);

  // The same bucket covers WebSocket frames: the socket answers with an error event, stays open.
  const ws = new WebSocket(`${t.wsUrl}/v1/stream?token=${b.token}`);
  const frames: any[] = [];
  ws.on('message', (data) => frames.push(JSON.parse(data.toString())));
  await new Promise((resolve) => ws.once('open', resolve));
  for (let i = 0; i < 10; i++) ws.send(JSON.stringify({ type: 'typing', conversationId: '1' }));
  const deadline = Date.now() + 5000;
  while (!frames.some((f) => f.code === 'rate_limited') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  ws.terminate();
  assert.ok(frames.some((f) => f.type === 'error' && f.code === 'rate_limited'), JSON.stringify(frames));
});

test('sign-ins from one address are limited too', async () => {
  const statuses = [];
  for (let i = 0; i < 10; i++) statuses.push((await http.post('/v1/sessions', { username: 'nobody', password: 'wrong-password' })).status);
  assert.ok(statuses.includes(429), `statuses ${statuses}`);
});

test('an expired session is refused with 401', async () => {
  // A fresh app: the address's anonymous budget in the shared one is spent by the tests above.
  const fresh = await startTestApp();
  try {
    const client = httpClient(fresh.url);
    const user = await client.signUp('exp');
    assert.equal((await client.get('/v1/me', user.token)).status, 200);
    const admin = new pg.Client({ connectionString: fresh.server.superuserUrl.replace(/\/postgres$/, '/parley') });
    await admin.connect();
    await admin.query("UPDATE parley.sessions SET expires_at = now() - interval '1 second'");
    await admin.end();
    // Ended behind the app server's back (not by a sign-out through it): the server may trust the
    // session it looked up for data.readMaxLagMs more (chat.ts, sessionCacheMs), then refuses it.
    let answer = await client.get('/v1/me', user.token);
    const deadline = Date.now() + 30_000;
    while (answer.status === 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      answer = await client.get('/v1/me', user.token);
    }
    assert.equal(answer.status, 401);
    assert.match(answer.body.detail, /expired/);
    const send = await client.post(`/v1/conversations/1/messages`, { clientMessageId: randomUUID(), body: 'x' }, user.token);
    assert.equal(send.status, 401);

    // A sign-out through this server ends a session it had looked up at once, cache or not.
    const other = await client.signUp('out');
    assert.equal((await client.get('/v1/me', other.token)).status, 200);
    const out = await client.call('DELETE', '/v1/sessions/current', { token: other.token });
    assert.equal(out.status, 204);
    assert.equal((await client.get('/v1/me', other.token)).status, 401);
  } finally {
    await fresh.stop();
  }
});
