// Proves admission control by priority on a real app server over a real PostgreSQL (DESIGN.md
// invariant 9): with the server's only database connection held (a send blocked on its
// conversation's lock, which the test holds), typing indicators and reads are shed — 503
// problem+json with Retry-After, or an `overloaded` error frame — while every send waits; a send is
// shed only when nothing of a lower class is left waiting, and every send not shed is stored once the
// lock goes. Nothing answers 500 and nothing is left hanging. Counts and order only, no timings.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type pg from 'pg';
import pino from 'pino';
import WebSocket from 'ws';
import { loadConfig } from '../config/config.ts';
import { appDatabaseName } from '../data/data.ts';
import { freePort } from '../postgres/postgres.ts';
import { startAppServer, type AppServer } from './api.ts';
import { adminClient, httpClient, metricSeries, startTestApp, waitForEvent as waitUntil, type TestApp } from './testing.ts';

// One connection, so one blocked statement stops the database for this server. Sends may wait a
// minute and statements run as long, so only the test decides when the block ends; reads wait at most
// 1 s and typing 250 ms (data/admission.ts), so those are shed either way, by the queue or by time.
const overrides = {
  data: { poolSize: 1, queryTimeoutMs: 60_000, connectTimeoutMs: 60_000 },
  http: { rateLimitPerMinute: 1_000_000 },
};
// The queue's bound: data/database.ts allows 50 waiting per connection.
const waitingMax = 50;

let t: TestApp;
let other: AppServer | undefined;
let admin: pg.Client | undefined;

before(async () => {
  t = await startTestApp(overrides);
  admin = await adminClient(t);
});
after(async () => {
  await admin?.end().catch(() => undefined);
  await other?.close().catch(() => undefined);
  await t?.stop();
});

/** An HTTP call whose answer is recorded when it comes; `answer` stays undefined until then. */
function track(call: () => Promise<{ status: number; body: any; headers: Headers }>) {
  const entry: { answer?: { status: number; code?: string; type: string | null; retryAfter: string | null } } = {};
  const done = call().then(
    (r) => {
      entry.answer = { status: r.status, code: r.body?.code, type: r.headers.get('content-type'), retryAfter: r.headers.get('retry-after') };
    },
    // No answer at all (the server went away when a failed test stopped it): status 0 fails the checks.
    () => {
      entry.answer = { status: 0, type: null, retryAfter: null };
    },
  );
  return Object.assign(entry, { done });
}

/** A socket that keeps every frame it receives. */
async function openSocket(token: string): Promise<{ ws: WebSocket; frames: any[] }> {
  const ws = new WebSocket(`${t.wsUrl}/v1/stream?token=${token}`);
  const frames: any[] = [];
  ws.on('message', (data) => frames.push(JSON.parse(data.toString())));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, frames };
}

const metric = (name: string) => metricSeries(t.url, name);

function sum(values: Map<string, number>, labelPart: string): number {
  let total = 0;
  for (const [series, value] of values) if (series.includes(labelPart)) total += value;
  return total;
}

test('under overload typing and reads are shed before any send, sends only when nothing lower waits, and every answer is a success or a 503 with Retry-After', async () => {
  const http = httpClient(t.url);
  const alice = await http.signUp('ova');
  const bob = await http.signUp('ovb');
  const direct = (await http.post('/v1/conversations', { kind: 'direct', members: [bob.username] }, alice.token)).body;
  const group = (await http.post('/v1/conversations', { kind: 'group', title: 'lock', members: [bob.username] }, alice.token)).body;
  assert.ok(direct?.id && group?.id);
  // Each send goes to its own conversation: sends of one conversation take turns before they ask for
  // a connection (chat/turns.ts; src/api/hot-conversation.test.ts), so only sends to different
  // conversations fill this queue.
  const queued: string[] = [];
  for (let i = 0; i < waitingMax + 10; i++) {
    const created = await http.post('/v1/conversations', { kind: 'group', title: `queued ${i}`, members: [bob.username] }, alice.token);
    assert.equal(created.status, 201);
    queued.push(created.body.id);
  }

  // Conversations for typing, made on a second app server so this one has not cached their members:
  // a typing frame for them must read the database, as the lowest class.
  const config = loadConfig({ env: {}, overrides: { log: { level: 'silent' }, ...overrides } });
  const port = await freePort();
  other = await startAppServer({ config, databaseUrl: t.appDatabaseUrl, port, host: '127.0.0.1', logger: pino({ level: 'silent' }) });
  const typingConversations: string[] = [];
  for (let i = 0; i < 10; i++) {
    const created = await httpClient(other.url).post('/v1/conversations', { kind: 'group', title: `typing ${i}`, members: [alice.username] }, bob.token);
    assert.equal(created.status, 201);
    typingConversations.push(created.body.id);
  }
  const sockets = await Promise.all(typingConversations.map(() => openSocket(bob.token)));

  // Hold the group's lock, then block the server's only connection with a send to it.
  await admin!.query('SELECT pg_advisory_lock($1::bigint)', [group.id]);
  let unlocked = false;
  try {
    const blocked = track(() => http.call('POST', `/v1/conversations/${group.id}/messages`, { token: alice.token, body: { clientMessageId: randomUUID(), body: 'blocked' } }));
    await waitUntil('the send waits for the lock', async () => {
      const rows = await admin!.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND datname = $1", [appDatabaseName]);
      return rows.rows[0].n === 1;
    });

    // A burst: typing first (each reads members), then reads, then exactly as many sends as may wait.
    sockets.forEach((s, i) => s.ws.send(JSON.stringify({ type: 'typing', conversationId: typingConversations[i] })));
    const reads = Array.from({ length: 20 }, () => track(() => http.call('GET', `/v1/conversations/${direct.id}/messages`, { token: bob.token })));
    const send = (i: number) => track(() => http.call('POST', `/v1/conversations/${queued[i]}/messages`, { token: alice.token, body: { clientMessageId: randomUUID(), body: `send ${i}` } }));
    const sends = Array.from({ length: waitingMax }, (_, i) => send(i));

    const typingShed = () => sockets.filter((s) => s.frames.some((f) => f.type === 'error' && f.code === 'overloaded')).length;
    await waitUntil('every typing frame and every read is answered', () => typingShed() === sockets.length && reads.every((r) => r.answer));
    await waitUntil('every send waits in the queue', async () => {
      const answered = sends.filter((s) => s.answer).map((s) => s.answer!.status);
      if (answered.length > 0) throw new Error(`a send was answered (${answered.join(', ')}) while the lower classes were being shed`);
      return sum(await metric('parley_admission_waiting'), 'class="send"') === waitingMax;
    });
    for (const r of reads) {
      assert.equal(r.answer!.status, 503);
      assert.equal(r.answer!.code, 'overloaded');
      assert.ok(r.answer!.type?.startsWith('application/problem+json'), `problem+json, not ${r.answer!.type}`);
      assert.equal(r.answer!.retryAfter, '2');
    }
    assert.equal(sends.filter((s) => s.answer).length, 0, 'no send answered while the lower classes were shed: all still wait');
    assert.equal(blocked.answer, undefined);

    // Now only sends wait, and the queue is full: a read arriving is shed at once, and each further
    // send makes room by shedding the oldest send.
    const lateReads = Array.from({ length: 5 }, () => track(() => http.call('GET', '/v1/conversations', { token: bob.token })));
    await waitUntil('the late reads are answered', () => lateReads.every((r) => r.answer));
    assert.ok(lateReads.every((r) => r.answer!.status === 503 && r.answer!.code === 'overloaded' && r.answer!.retryAfter === '2'));
    const moreSends = Array.from({ length: 10 }, (_, i) => send(waitingMax + i));
    await waitUntil('ten sends are shed', () => [...sends, ...moreSends].filter((s) => s.answer).length === 10);
    const shedSends = [...sends, ...moreSends].filter((s) => s.answer);
    assert.ok(shedSends.every((s) => s.answer!.status === 503 && s.answer!.code === 'overloaded' && s.answer!.type?.startsWith('application/problem+json') && s.answer!.retryAfter === '1'));

    await admin!.query('SELECT pg_advisory_unlock($1::bigint)', [group.id]);
    unlocked = true;
    await Promise.all([blocked.done, ...sends.map((s) => s.done), ...moreSends.map((s) => s.done)]);
    assert.equal(blocked.answer!.status, 201);
    const stored = [...sends, ...moreSends].filter((s) => s.answer!.status === 201).length;
    assert.equal(stored, waitingMax, 'every send not shed is stored');
    const statuses = [...reads, ...lateReads, ...sends, ...moreSends, blocked].map((r) => r.answer!.status);
    assert.ok(statuses.every((s) => s === 201 || s === 503), `only 201 and 503: ${statuses.join(' ')}`);
    const everySend = [...sends, ...moreSends];
    for (let i = 0; i < everySend.length; i++) {
      const history = await http.get(`/v1/conversations/${queued[i]}/messages`, alice.token);
      const expected = everySend[i]!.answer!.status === 201 ? [`send ${i}`] : [];
      assert.deepEqual(history.body.messages.map((m: any) => m.body), expected, `conversation of send ${i}: stored exactly when acknowledged`);
    }

    // /metrics counts the same: by class in the admission counter, with cause `shed` in the
    // database errors (typing frames on sockets included).
    const shed = await metric('parley_admission_shed_total');
    assert.equal(sum(shed, 'class="typing"'), sockets.length);
    assert.equal(sum(shed, 'class="read"'), reads.length + lateReads.length);
    assert.equal(sum(shed, 'class="send"'), 10);
    assert.equal(sum(shed, 'reason="stalled"'), 0);
    const databaseErrors = await metric('parley_database_errors_total');
    assert.equal(sum(databaseErrors, 'cause="shed"'), sockets.length + reads.length + lateReads.length + 10);

    // The typing sockets stay usable: with the database free again a typing frame reaches alice.
    const alicesSocket = await openSocket(alice.token);
    sockets[0]!.ws.send(JSON.stringify({ type: 'typing', conversationId: typingConversations[0] }));
    await waitUntil('alice sees bob typing', () => alicesSocket.frames.some((f) => f.type === 'typing' && f.accountId === bob.id));
    alicesSocket.ws.terminate();
  } finally {
    if (!unlocked) await admin!.query('SELECT pg_advisory_unlock($1::bigint)', [group.id]).catch(() => undefined);
    for (const s of sockets) s.ws.terminate();
  }
});
