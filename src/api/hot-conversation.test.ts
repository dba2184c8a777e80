// Proves that a hot conversation cannot take the app server's database away from everyone else
// (chat/turns.ts): with 60 sends to one conversation held up by its lock (the test holds it), the
// conversation holds two of the pool's three connections and the other sends wait for their turn,
// so a send and a read in another conversation are answered at once; when the lock goes, all 60 are
// stored, gap-free, and none is shed — neither by the turns nor by admission control. Before the
// turns, the 60 took every connection and the other conversation waited for the lock too. Events
// only, no timings.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type pg from 'pg';
import { appDatabaseName } from '../data/data.ts';
import { adminClient, httpClient, metricSeries, startTestApp, waitForEvent as waitUntil, type TestApp } from './testing.ts';

// Three connections; sends and statements may wait a minute, so only the test ends the block.
const overrides = {
  data: { poolSize: 3, queryTimeoutMs: 60_000, connectTimeoutMs: 60_000 },
  http: { rateLimitPerMinute: 1_000_000 },
};
const burst = 60;

let t: TestApp;
let admin: pg.Client | undefined;

before(async () => {
  t = await startTestApp(overrides);
  admin = await adminClient(t);
});
after(async () => {
  await admin?.end().catch(() => undefined);
  await t?.stop();
});

async function metric(name: string): Promise<number> {
  let total = 0;
  for (const value of (await metricSeries(t.url, name)).values()) total += value;
  return total;
}

test('a burst to one conversation held by its lock takes two connections, not the pool: other conversations are served meanwhile, and all 60 are stored', async () => {
  const http = httpClient(t.url);
  const alice = await http.signUp('hota');
  const bob = await http.signUp('hotb');
  const hot = (await http.post('/v1/conversations', { kind: 'group', title: 'hot', members: [bob.username] }, alice.token)).body;
  const quiet = (await http.post('/v1/conversations', { kind: 'group', title: 'quiet', members: [bob.username] }, alice.token)).body;
  assert.ok(hot?.id && quiet?.id);

  await admin!.query('SELECT pg_advisory_lock($1::bigint)', [hot.id]);
  let unlocked = false;
  try {
    const answers: Array<{ status: number; body: any } | undefined> = Array.from({ length: burst }, () => undefined);
    const sends = Array.from({ length: burst }, (_, i) =>
      http
        .call('POST', `/v1/conversations/${hot.id}/messages`, { token: (i % 2 === 0 ? alice : bob).token, body: { clientMessageId: randomUUID(), body: `hot ${i}` } })
        .then((r) => {
          answers[i] = { status: r.status, body: r.body };
        }),
    );
    await waitUntil('two sends wait for the lock and the rest for their turn', async () => {
      const rows = await admin!.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND datname = $1", [appDatabaseName]);
      return rows.rows[0].n === 2 && (await metric('parley_send_turn_waiting')) === burst - 2;
    });

    // The lock still held: another conversation is served by the pool's third connection.
    const other = await http.call('POST', `/v1/conversations/${quiet.id}/messages`, { token: bob.token, body: { clientMessageId: randomUUID(), body: 'meanwhile' } });
    assert.equal(other.status, 201, JSON.stringify(other.body));
    const read = await http.call('GET', `/v1/conversations/${quiet.id}/messages`, { token: alice.token });
    assert.equal(read.status, 200);
    assert.deepEqual(read.body.messages.map((m: any) => m.body), ['meanwhile']);
    assert.equal(answers.filter((a) => a !== undefined).length, 0, 'no send to the hot conversation was answered while its lock was held');

    await admin!.query('SELECT pg_advisory_unlock($1::bigint)', [hot.id]);
    unlocked = true;
    await Promise.all(sends);
    assert.deepEqual(
      answers.map((a) => a!.status),
      Array.from({ length: burst }, () => 201),
    );
    assert.deepEqual(answers.map((a) => a!.body.message.seq).sort((x, y) => x - y), Array.from({ length: burst }, (_, i) => i + 1));
    const history = await http.get(`/v1/conversations/${hot.id}/messages?limit=200`, alice.token);
    assert.deepEqual(history.body.messages.map((m: any) => m.seq), Array.from({ length: burst }, (_, i) => i + 1));
    assert.equal(await metric('parley_send_turn_shed_total'), 0);
    assert.equal(await metric('parley_send_turn_waiting'), 0);
    assert.equal(await metric('parley_admission_shed_total'), 0);
  } finally {
    if (!unlocked) await admin!.query('SELECT pg_advisory_unlock($1::bigint)', [hot.id]).catch(() => undefined);
  }
});
