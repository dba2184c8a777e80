// Proves invariants 2 and 3 under concurrency on a real PostgreSQL: random interleavings of
// concurrent sends and retries by several senders leave, per conversation, seq 1..n with no gap
// and each clientMessageId stored exactly once; sync delivers each conversation in seq order.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { createDatabase, databaseUrl, provisionDatabase, type Database } from '../data/data.ts';
import { startThrowawayServer, type ThrowawayServer } from '../postgres/postgres.ts';
import { createChat, type Caller, type Chat } from './chat.ts';

let server: ThrowawayServer;
let db: Database;
let chat: Chat;

before(async () => {
  server = await startThrowawayServer();
  const appPassword = randomBytes(12).toString('hex');
  await provisionDatabase({ superuserUrl: server.superuserUrl, appPassword });
  db = createDatabase({
    url: databaseUrl({ port: server.port, user: 'parley_app', password: appPassword, database: 'parley' }),
    poolSize: 12,
    queryTimeoutMs: 10_000,
    connectTimeoutMs: 10_000,
  });
  chat = createChat(db, { sessionTtlHours: 1 });
});
after(async () => {
  await db?.close();
  await server?.stop();
});

async function account(prefix: string): Promise<Caller> {
  const username = `${prefix}${randomBytes(4).toString('hex')}`;
  const created = await chat.register({ username, password: 'long-enough' });
  return { ...created, isOperator: false };
}

test('concurrent sends and retries: gap-free seq and exactly one message per clientMessageId', async () => {
  const senders = await Promise.all([account('s'), account('s'), account('s')]);
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(
      // Each planned message: who sends it and how many times it is (re)tried concurrently.
      fc.array(fc.record({ sender: fc.integer({ min: 0, max: 2 }), tries: fc.integer({ min: 1, max: 4 }) }), { minLength: 1, maxLength: 25 }),
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      async (plan, shuffleSeed) => {
        runs++;
        const { conversation } = await chat.createConversation(senders[0]!, {
          kind: 'group',
          members: senders.slice(1).map((s) => s.username),
          title: `run ${runs}`,
        });
        const attempts = plan.flatMap((p, i) => {
          const id = randomUUID();
          return Array.from({ length: p.tries }, () => ({ sender: senders[p.sender]!, clientMessageId: id, body: `m${i}` }));
        });
        // A seeded shuffle gives a different interleaving per run, reproducible from the seed.
        let state = shuffleSeed || 1;
        for (let i = attempts.length - 1; i > 0; i--) {
          state = (state * 1103515245 + 12345) % 2 ** 31;
          const j = state % (i + 1);
          [attempts[i], attempts[j]] = [attempts[j]!, attempts[i]!];
        }
        const results = await Promise.all(attempts.map((a) => chat.send(a.sender, { conversationId: conversation.id, clientMessageId: a.clientMessageId, body: a.body })));
        const byClientId = new Map<string, Set<string>>();
        results.forEach((r) => byClientId.set(r.message.clientMessageId, (byClientId.get(r.message.clientMessageId) ?? new Set()).add(r.message.id)));
        for (const ids of byClientId.values()) assert.equal(ids.size, 1, 'every retry answered with the one stored message');
        assert.equal(results.filter((r) => r.created).length, plan.length, 'exactly one attempt per message created it');
        const page = await chat.history(senders[0]!, { conversationId: conversation.id, afterSeq: 0, limit: 200 });
        assert.deepEqual(page.messages.map((m) => m.seq), Array.from({ length: plan.length }, (_, i) => i + 1));
        assert.equal(new Set(page.messages.map((m) => m.clientMessageId)).size, plan.length);
      },
    ),
    { numRuns: 25 },
  );
});

test('sync delivers every conversation in seq order while senders race in several conversations', async () => {
  const a = await account('a');
  const b = await account('b');
  const start = await chat.sync(b, {});
  const conversations = await Promise.all(
    [0, 1, 2].map((i) => chat.createConversation(a, { kind: 'group', members: [b.username], title: `c${i}` }).then((r) => r.conversation.id)),
  );
  await Promise.all(
    Array.from({ length: 90 }, (_, i) => chat.send(i % 2 ? a : b, { conversationId: conversations[i % 3]!, clientMessageId: randomUUID(), body: `x${i}` })),
  );
  const seen = new Map<string, number[]>();
  let cursor = start.cursor;
  for (let page = 0; page < 100; page++) {
    const answer = await chat.sync(b, { cursor, limit: 7 });
    for (const event of answer.events) {
      if (event.type === 'message') seen.set(event.message.conversationId, [...(seen.get(event.message.conversationId) ?? []), event.message.seq]);
    }
    cursor = answer.cursor;
    if (!answer.hasMore) break;
  }
  for (const id of conversations) assert.deepEqual(seen.get(id), Array.from({ length: 30 }, (_, i) => i + 1), `conversation ${id}`);
});

test('the same clientMessageId sent concurrently into two conversations: one message, one 409, no seq consumed', async () => {
  const a = await account('a');
  const b = await account('b');
  const one = (await chat.createConversation(a, { kind: 'group', members: [b.username], title: 'one' })).conversation.id;
  const two = (await chat.createConversation(a, { kind: 'group', members: [b.username], title: 'two' })).conversation.id;
  for (let round = 0; round < 20; round++) {
    const clientMessageId = randomUUID();
    const outcomes = await Promise.allSettled([
      chat.send(a, { conversationId: one, clientMessageId, body: 'which?' }),
      chat.send(a, { conversationId: two, clientMessageId, body: 'which?' }),
    ]);
    const stored = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.filter((o) => o.status === 'rejected');
    assert.equal(stored.length, 1, `round ${round}: ${JSON.stringify(outcomes)}`);
    assert.equal((refused[0] as PromiseRejectedResult).reason.code, 'conflict');
  }
  const seqs = async (id: string) => (await chat.history(a, { conversationId: id, afterSeq: 0, limit: 200 })).messages.map((m) => m.seq);
  const [s1, s2] = [await seqs(one), await seqs(two)];
  assert.equal(s1.length + s2.length, 20);
  assert.deepEqual(s1, s1.map((_, i) => i + 1));
  assert.deepEqual(s2, s2.map((_, i) => i + 1));
});
