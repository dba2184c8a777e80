// Proves the HTTP contract of API.md on a real PostgreSQL: accounts, sessions, conversations,
// exactly-once sends, paging, receipts, sync, OpenAPI, metrics — and that bad input of every kind
// gets a 4xx problem+json with a clear detail, never a 500 and never a half-written message.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { httpClient, startTestApp, type TestApp } from './testing.ts';

let t: TestApp;
let http: ReturnType<typeof httpClient>;

before(async () => {
  t = await startTestApp({ http: { rateLimitPerMinute: 100_000 } });
  http = httpClient(t.url);
});
after(async () => {
  await t?.stop();
});

function assertProblem(answer: { status: number; body: any; headers: Headers }, status: number, code: string) {
  assert.equal(answer.status, status, `expected ${status} ${code}, got ${answer.status} ${JSON.stringify(answer.body)}`);
  assert.match(answer.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(answer.body.code, code);
  assert.equal(answer.body.status, status);
  for (const key of ['type', 'title', 'detail']) assert.equal(typeof answer.body[key], 'string', `problem has ${key}`);
  assert.ok(answer.body.detail.length > 0);
}

describe('accounts and sessions', () => {
  test('register, sign in, me, sign out: the token stops working', async () => {
    const created = await http.post('/v1/accounts', { username: 'carol.k', password: 'secret-pass', displayName: 'Carol K' });
    assert.equal(created.status, 201);
    assert.deepEqual(Object.keys(created.body).sort(), ['displayName', 'id', 'username']);
    assert.equal(created.body.displayName, 'Carol K');
    assertProblem(await http.post('/v1/accounts', { username: 'carol.k', password: 'other-pass' }), 409, 'conflict');
    assertProblem(await http.post('/v1/sessions', { username: 'carol.k', password: 'wrong-pass' }), 401, 'unauthorized');
    assertProblem(await http.post('/v1/sessions', { username: 'nobody-here', password: 'wrong-pass' }), 401, 'unauthorized');
    const session = await http.post('/v1/sessions', { username: 'carol.k', password: 'secret-pass' });
    assert.equal(session.status, 201);
    assert.equal(session.body.account.id, created.body.id);
    const me = await http.get('/v1/me', session.body.token);
    assert.deepEqual(me.body, created.body);
    assert.equal((await http.del('/v1/sessions/current', session.body.token)).status, 204);
    assertProblem(await http.get('/v1/me', session.body.token), 401, 'unauthorized');
  });

  test('passwords are stored as scrypt hashes and tokens only as hashes', async () => {
    const pg = (await import('pg')).default;
    const client = new pg.Client({ connectionString: t.appDatabaseUrl });
    await client.connect();
    try {
      const user = await http.signUp('hash');
      const row = await client.query('SELECT password_hash FROM accounts WHERE id = $1', [user.id]);
      assert.match(row.rows[0].password_hash, /^scrypt\$/);
      const sessions = await client.query('SELECT encode(token_hash, $2) AS h FROM sessions WHERE account_id = $1', [user.id, 'base64']);
      assert.equal(sessions.rowCount, 1);
      assert.notEqual(sessions.rows[0].h, user.token);
    } finally {
      await client.end();
    }
  });
});

describe('conversations and messages', () => {
  test('a direct conversation exists once per pair, from either side; groups carry title and members', async () => {
    const a = await http.signUp('a');
    const b = await http.signUp('b');
    const c = await http.signUp('c');
    const first = await http.post('/v1/conversations', { kind: 'direct', members: [b.username] }, a.token);
    assert.equal(first.status, 201);
    assert.equal(first.body.kind, 'direct');
    assert.deepEqual(first.body.members.map((m: any) => m.username).sort(), [a.username, b.username].sort());
    const again = await http.post('/v1/conversations', { kind: 'direct', members: [a.username] }, b.token);
    assert.equal(again.status, 200);
    assert.equal(again.body.id, first.body.id);
    const group = await http.post('/v1/conversations', { kind: 'group', members: [b.username, c.username], title: 'Plans' }, a.token);
    assert.equal(group.status, 201);
    assert.equal(group.body.title, 'Plans');
    assert.equal(group.body.members.length, 3);
    assert.equal((await http.get(`/v1/conversations/${group.body.id}`, c.token)).body.id, group.body.id);
    const outsider = await http.signUp('o');
    assertProblem(await http.get(`/v1/conversations/${group.body.id}`, outsider.token), 403, 'forbidden');
    assertProblem(
      await http.post(`/v1/conversations/${group.body.id}/messages`, { clientMessageId: randomUUID(), body: 'let me in' }, outsider.token),
      403,
      'forbidden',
    );
    assertProblem(await http.get('/v1/conversations/987654321', a.token), 404, 'not_found');
    assertProblem(await http.post('/v1/conversations', { kind: 'direct', members: ['no-such-user'] }, a.token), 400, 'validation_failed');
    assertProblem(await http.post('/v1/conversations', { kind: 'direct', members: [b.username, c.username] }, a.token), 400, 'validation_failed');
  });

  test('20 concurrent identical sends store one message; 60 concurrent sends get seq 2..61 with no gap', async () => {
    const a = await http.signUp('a');
    const b = await http.signUp('b');
    const conversation = (await http.post('/v1/conversations', { kind: 'direct', members: [b.username] }, a.token)).body;
    const clientMessageId = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => http.post(`/v1/conversations/${conversation.id}/messages`, { clientMessageId, body: 'once' }, a.token)),
    );
    assert.deepEqual(answers.map((x) => x.status).sort(), [...Array(19).fill(200), 201]);
    assert.equal(new Set(answers.map((x) => x.body.message.id)).size, 1);
    assert.ok(answers.every((x) => x.body.message.seq === 1));
    const sends = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        http.post(`/v1/conversations/${conversation.id}/messages`, { clientMessageId: randomUUID(), body: `m${i}` }, i % 2 ? a.token : b.token),
      ),
    );
    assert.ok(sends.every((x) => x.status === 201), JSON.stringify(sends.find((x) => x.status !== 201)?.body));
    assert.deepEqual(sends.map((x) => x.body.message.seq).sort((x, y) => x - y), Array.from({ length: 60 }, (_, i) => i + 2));
    const page = await http.get(`/v1/conversations/${conversation.id}/messages?limit=200`, a.token);
    assert.deepEqual(page.body.messages.map((m: any) => m.seq), Array.from({ length: 61 }, (_, i) => i + 1));
    assert.equal(page.body.hasMore, false);
    // The same clientMessageId in another conversation is a conflict, not a second message.
    const other = (await http.post('/v1/conversations', { kind: 'group', members: [b.username] }, a.token)).body;
    assertProblem(await http.post(`/v1/conversations/${other.id}/messages`, { clientMessageId, body: 'once' }, a.token), 409, 'conflict');
  });

  test('history pages both ways with hasMore, in ascending seq', async () => {
    const a = await http.signUp('a');
    const b = await http.signUp('b');
    const conversation = (await http.post('/v1/conversations', { kind: 'direct', members: [b.username] }, a.token)).body;
    for (let i = 1; i <= 7; i++) {
      await http.post(`/v1/conversations/${conversation.id}/messages`, { clientMessageId: randomUUID(), body: `n${i}` }, a.token);
    }
    const url = (q: string) => `/v1/conversations/${conversation.id}/messages?${q}`;
    const seqs = (answer: any) => answer.body.messages.map((m: any) => m.seq);
    let page = await http.get(url('limit=3'), b.token);
    assert.deepEqual([seqs(page), page.body.hasMore], [[5, 6, 7], true]);
    page = await http.get(url('limit=3&beforeSeq=5'), b.token);
    assert.deepEqual([seqs(page), page.body.hasMore], [[2, 3, 4], true]);
    page = await http.get(url('limit=3&beforeSeq=2'), b.token);
    assert.deepEqual([seqs(page), page.body.hasMore], [[1], false]);
    page = await http.get(url('limit=3&afterSeq=0'), b.token);
    assert.deepEqual([seqs(page), page.body.hasMore], [[1, 2, 3], true]);
    page = await http.get(url('limit=3&afterSeq=4'), b.token);
    assert.deepEqual([seqs(page), page.body.hasMore], [[5, 6, 7], false]);
    page = await http.get(url('afterSeq=1&beforeSeq=4'), b.token);
    assert.deepEqual(seqs(page), [2, 3]);
    assertProblem(await http.get(url('limit=201'), b.token), 400, 'validation_failed');
    assertProblem(await http.get(url('limit=0'), b.token), 400, 'validation_failed');
    assertProblem(await http.get(url('afterSeq=-1'), b.token), 400, 'validation_failed');
  });

  test('read receipts never move backwards; the list shows unread and last message, newest first', async () => {
    const a = await http.signUp('a');
    const b = await http.signUp('b');
    const older = (await http.post('/v1/conversations', { kind: 'group', members: [b.username], title: 'older' }, a.token)).body;
    const conversation = (await http.post('/v1/conversations', { kind: 'direct', members: [b.username] }, a.token)).body;
    for (let i = 1; i <= 4; i++) {
      await http.post(`/v1/conversations/${conversation.id}/messages`, { clientMessageId: randomUUID(), body: `r${i}` }, a.token);
    }
    let list = (await http.get('/v1/conversations', b.token)).body.conversations;
    assert.deepEqual(list.map((c: any) => c.id), [conversation.id, older.id]);
    assert.deepEqual([list[0].unread, list[0].lastReadSeq, list[0].lastMessage.body], [4, 0, 'r4']);
    assert.equal(list[1].lastMessage, undefined);
    assert.equal((await http.post(`/v1/conversations/${conversation.id}/read`, { seq: 3 }, b.token)).status, 204);
    assert.equal((await http.post(`/v1/conversations/${conversation.id}/read`, { seq: 1 }, b.token)).status, 204);
    list = (await http.get('/v1/conversations', b.token)).body.conversations;
    assert.deepEqual([list[0].unread, list[0].lastReadSeq], [1, 3]);
    assertProblem(await http.post(`/v1/conversations/${conversation.id}/read`, { seq: 99 }, b.token), 400, 'validation_failed');
    // The sender has read their own messages.
    const senderList = (await http.get('/v1/conversations', a.token)).body.conversations;
    assert.equal(senderList[0].unread, 0);
    // Replying past unread messages is reading them: the other side gets a read receipt.
    const aCursor = (await http.get('/v1/sync', a.token)).body.cursor;
    await http.post(`/v1/conversations/${conversation.id}/messages`, { clientMessageId: randomUUID(), body: 'reply' }, b.token);
    const events = (await http.get(`/v1/sync?cursor=${aCursor}`, a.token)).body.events;
    assert.deepEqual(events.map((e: any) => e.type), ['message', 'read']);
    assert.deepEqual(events[1], { type: 'read', conversationId: conversation.id, accountId: b.id, seq: 5 });
    list = (await http.get('/v1/conversations', b.token)).body.conversations;
    assert.deepEqual([list[0].unread, list[0].lastReadSeq], [0, 5]);
  });
});

describe('sync', () => {
  test('no cursor means now; later events arrive in order; an old cursor still works; pages chain', async () => {
    const a = await http.signUp('a');
    const b = await http.signUp('b');
    const start = await http.get('/v1/sync', b.token);
    assert.deepEqual(start.body.events, []);
    assert.equal(typeof start.body.cursor, 'string');
    const conversation = (await http.post('/v1/conversations', { kind: 'direct', members: [b.username] }, a.token)).body;
    for (let i = 1; i <= 5; i++) {
      await http.post(`/v1/conversations/${conversation.id}/messages`, { clientMessageId: randomUUID(), body: `s${i}` }, a.token);
    }
    await http.post(`/v1/conversations/${conversation.id}/read`, { seq: 2 }, b.token);
    const all = await http.get(`/v1/sync?cursor=${start.body.cursor}`, b.token);
    assert.deepEqual(
      all.body.events.map((e: any) => (e.type === 'message' ? `m${e.message.seq}` : e.type === 'read' ? `r${e.seq}` : e.type)),
      ['conversation', 'm1', 'm2', 'm3', 'm4', 'm5', 'r2'],
    );
    assert.equal(all.body.hasMore, false);
    const quiet = await http.get(`/v1/sync?cursor=${all.body.cursor}`, b.token);
    assert.deepEqual(quiet.body.events, []);
    // Pages of 2 chain to the same sequence.
    const seen: string[] = [];
    let cursor = start.body.cursor;
    for (let i = 0; i < 10; i++) {
      const page = await http.get(`/v1/sync?cursor=${cursor}&limit=2`, b.token);
      seen.push(...page.body.events.map((e: any) => e.type));
      cursor = page.body.cursor;
      if (!page.body.hasMore) break;
    }
    assert.equal(seen.length, 7);
    // Someone else's events are not in my sync.
    const c = await http.signUp('c');
    const cStart = await http.get('/v1/sync', c.token);
    await http.post(`/v1/conversations/${conversation.id}/messages`, { clientMessageId: randomUUID(), body: 'private' }, a.token);
    assert.deepEqual((await http.get(`/v1/sync?cursor=${cStart.body.cursor}`, c.token)).body.events, []);
    assertProblem(await http.get('/v1/sync?cursor=not-a-cursor', b.token), 400, 'validation_failed');
  });
});

describe('bad input', () => {
  test('a table of bad requests: each a 4xx problem+json naming the problem', async () => {
    const a = await http.signUp('a');
    const b = await http.signUp('b');
    const conversation = (await http.post('/v1/conversations', { kind: 'direct', members: [b.username] }, a.token)).body;
    const send = `/v1/conversations/${conversation.id}/messages`;
    const cases: Array<[string, () => Promise<any>, number, string, RegExp?]> = [
      ['malformed JSON', () => http.call('POST', '/v1/accounts', { raw: '{"username": ' }), 400, 'validation_failed', /JSON/],
      ['empty JSON body', () => http.call('POST', '/v1/accounts', { raw: '' }), 400, 'validation_failed'],
      ['wrong types', () => http.post('/v1/accounts', { username: 42, password: true }), 400, 'validation_failed', /body\.username/],
      ['unknown field', () => http.post('/v1/accounts', { username: 'okname', password: 'longenough', admin: true }), 400, 'validation_failed', /unknown field "admin"/],
      ['missing field', () => http.post('/v1/accounts', { username: 'okname' }), 400, 'validation_failed', /body\.password/],
      ['username with capitals', () => http.post('/v1/accounts', { username: 'Alice', password: 'longenough' }), 400, 'validation_failed', /username/],
      ['short password', () => http.post('/v1/accounts', { username: 'shorty', password: 'short' }), 400, 'validation_failed', /password/],
      ['array body', () => http.call('POST', '/v1/accounts', { raw: '[1,2]' }), 400, 'validation_failed'],
      ['text/plain body', () => http.call('POST', '/v1/accounts', { raw: 'hi', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type'],
      ['oversize body', () => http.call('POST', send, { raw: JSON.stringify({ clientMessageId: randomUUID(), body: 'x'.repeat(70_000) }), token: a.token }), 413, 'payload_too_large'],
      ['bad uuid', () => http.post(send, { clientMessageId: 'not-a-uuid', body: 'hello' }, a.token), 400, 'validation_failed', /clientMessageId/],
      ['empty message', () => http.post(send, { clientMessageId: randomUUID(), body: '' }, a.token), 400, 'validation_failed', /body/],
      ['4001-char message', () => http.post(send, { clientMessageId: randomUUID(), body: 'x'.repeat(4001) }, a.token), 400, 'validation_failed', /4000/],
      ['NUL in message', () => http.post(send, { clientMessageId: randomUUID(), body: 'a\u0000b' }, a.token), 400, 'validation_failed', /NUL/],
      ['no token', () => http.get('/v1/me'), 401, 'unauthorized'],
      ['garbage token', () => http.get('/v1/me', 'garbage'), 401, 'unauthorized'],
      ['unknown token', () => http.get('/v1/me', 'A'.repeat(43)), 401, 'unauthorized'],
      ['unknown conversation', () => http.post('/v1/conversations/4242424242/messages', { clientMessageId: randomUUID(), body: 'x' }, a.token), 404, 'not_found'],
      ['non-numeric conversation', () => http.get('/v1/conversations/not-a-number', a.token), 404, 'not_found'],
      ['unknown route', () => http.get('/v1/nothing-here'), 404, 'not_found'],
      ['bad read seq', () => http.post(`/v1/conversations/${conversation.id}/read`, { seq: -1 }, a.token), 400, 'validation_failed'],
      ['unknown query field', () => http.get(`${send}?order=desc`, a.token), 400, 'validation_failed', /order/],
      ['bad conversation kind', () => http.post('/v1/conversations', { kind: 'channel', members: [b.username] }, a.token), 400, 'validation_failed', /kind/],
    ];
    for (const [name, run, status, code, detail] of cases) {
      const answer = await run();
      assert.equal(answer.status, status, `${name}: expected ${status}, got ${answer.status} ${answer.text}`);
      assertProblem(answer, status, code);
      if (detail) assert.match(answer.body.detail, detail, name);
    }
    // Nothing half-written: the conversation still has no messages.
    const page = await http.get(`${send}?limit=10`, a.token);
    assert.deepEqual(page.body.messages, []);
  });

  test('thousands of random bodies never get a 500 and never store a message that was refused', async () => {
    const a = await http.signUp('a');
    const b = await http.signUp('b');
    const conversation = (await http.post('/v1/conversations', { kind: 'direct', members: [b.username] }, a.token)).body;
    const routes = ['/v1/accounts', '/v1/sessions', '/v1/conversations', `/v1/conversations/${conversation.id}/messages`, `/v1/conversations/${conversation.id}/read`];
    let stored = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes),
        fc.oneof(
          fc.json(),
          fc.string(),
          fc.record({ clientMessageId: fc.oneof(fc.uuid(), fc.string()), body: fc.oneof(fc.string({ unit: 'binary', maxLength: 50 }), fc.integer()) }, { requiredKeys: [] }),
          fc.record({ username: fc.string(), password: fc.string(), displayName: fc.string() }, { requiredKeys: [] }),
          fc.record({ kind: fc.constantFrom('direct', 'group', 'x'), members: fc.array(fc.string(), { maxLength: 3 }), title: fc.string() }, { requiredKeys: [] }),
        ),
        async (route, body) => {
          const raw = typeof body === 'string' ? body : JSON.stringify(body);
          const answer = await http.call('POST', route, { raw, token: a.token });
          assert.ok(answer.status < 500, `${route} ${raw} → ${answer.status} ${answer.text}`);
          if (answer.status >= 400) assert.match(answer.headers.get('content-type') ?? '', /problem\+json/);
          if (route.endsWith('/messages') && answer.status === 201) stored++;
        },
      ),
      { numRuns: 1500 },
    );
    const page = await http.get(`/v1/conversations/${conversation.id}/messages?limit=200&afterSeq=0`, a.token);
    assert.equal(page.body.messages.length, Math.min(stored, 200));
  });
});

describe('operations', () => {
  test('OpenAPI 3.1 describes every route from the request schemas', async () => {
    const doc = (await http.get('/v1/openapi.json')).body;
    assert.equal(doc.openapi, '3.1.0');
    for (const path of ['/v1/accounts', '/v1/sessions', '/v1/sessions/current', '/v1/me', '/v1/conversations', '/v1/conversations/{id}', '/v1/conversations/{id}/messages', '/v1/conversations/{id}/read', '/v1/sync']) {
      assert.ok(doc.paths[path], `OpenAPI has ${path}`);
    }
    const body = doc.paths['/v1/conversations/{id}/messages'].post.requestBody.content['application/json'].schema;
    assert.deepEqual(body.required.sort(), ['body', 'clientMessageId']);
    assert.equal(body.additionalProperties, false);
    assert.ok(doc.paths['/v1/conversations/{id}/messages'].get.parameters.some((p: any) => p.name === 'beforeSeq' && p.in === 'query'));
  });

  test('metrics count requests by route and errors by code; health and readiness answer', async () => {
    await http.get('/v1/me', 'nope');
    const metrics = await http.get('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /parley_http_request_duration_seconds_bucket\{.*route="\/v1\/me".*status="401"/);
    assert.match(metrics.text, /parley_errors_total\{code="unauthorized",route="\/v1\/me",dependency="none"\} [1-9]/);
    assert.deepEqual((await http.get('/healthz')).body, { state: 'ok' });
    const ready = await http.get('/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.body.state, 'ok');
    const status = await http.get('/v1/status');
    assert.equal(status.body.state, 'ok');
  });
});
