// Proves invariant 1 at the edge where PostgreSQL itself would break it: a commit that waits for a
// synchronous standby and is cancelled (statement_timeout) is kept on the primary alone, with a
// WARNING and a success. Neither that send nor its retry may be acknowledged until a standby has
// the message. The "standby" here is a name in synchronous_standby_names that never connects,
// which is exactly how a primary sees standbys that are all down.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createDatabase, databaseUrl, provisionDatabase, type Database } from '../data/data.ts';
import { isParleyError } from '../errors/errors.ts';
import { startThrowawayServer, type ThrowawayServer } from '../postgres/postgres.ts';
import { createChat, type Caller, type Chat } from './chat.ts';

let server: ThrowawayServer;
let db: Database;
let chat: Chat;

before(async () => {
  // Throwaway servers default to synchronous_commit off (speed); this test is about it being on.
  // queryTimeoutMs 300: the client gives up on a commit waiting for a standby after 0.3 s.
  server = await startThrowawayServer({ settings: { synchronous_commit: 'on' } });
  const appPassword = randomBytes(12).toString('hex');
  await provisionDatabase({ superuserUrl: server.superuserUrl, appPassword });
  db = createDatabase({
    url: databaseUrl({ port: server.port, user: 'parley_app', password: appPassword, database: 'parley' }),
    poolSize: 4,
    queryTimeoutMs: 300,
    connectTimeoutMs: 10_000,
  });
  chat = createChat(db, { sessionTtlHours: 1 });
});
after(async () => {
  await db?.close();
  await server?.stop();
});

/**
 * Sets synchronous_standby_names and waits until commits obey it: the reload reaches the
 * checkpointer, which flips the shared flag that commits read, some moments later. A probe commit
 * (a WAL-writing one, through a pool with a 200 ms deadline) tells which way the flag is.
 */
async function setSynchronousStandbys(names: string): Promise<void> {
  await superuserQuery(`ALTER SYSTEM SET synchronous_standby_names = '${names}'`);
  await superuserQuery('SELECT pg_reload_conf()');
  const probe = createDatabase({ url: server.superuserUrl, poolSize: 1, queryTimeoutMs: 200, connectTimeoutMs: 5000 });
  try {
    for (let attempt = 0; ; attempt++) {
      const waits = await probe.query("SELECT pg_logical_emit_message(true, 'test', 'probe')").then(() => false, () => true);
      if (waits === (names !== '')) return;
      if (attempt === 100) throw new Error(`synchronous_standby_names = '${names}' did not take effect`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await probe.close();
  }
}

async function superuserQuery<R extends pg.QueryResultRow>(text: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: server.superuserUrl });
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}

/** Refused because the commit's wait for a standby was cancelled, not because a connection broke. */
async function rejectsUnconfirmed(promise: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(
    promise,
    (error: unknown) => isParleyError(error) && error.code === 'storage_unavailable' && /confirm the write on a standby/.test(error.message),
    what,
  );
}

test('with no synchronous standby, neither a send nor its retry is acknowledged; both are once the quorum is back', async () => {
  const alice: Caller = { ...(await chat.register({ username: `a${randomBytes(4).toString('hex')}`, password: 'long-enough' })), isOperator: false };
  const bob = await chat.register({ username: `b${randomBytes(4).toString('hex')}`, password: 'long-enough' });
  const { conversation } = await chat.createConversation(alice, { kind: 'direct', members: [bob.username] });
  const before = { conversationId: conversation.id, clientMessageId: randomUUID(), body: 'acknowledged while replicated' };
  const during = { conversationId: conversation.id, clientMessageId: randomUUID(), body: 'sent while no standby answers' };
  assert.equal((await chat.send(alice, before)).created, true);

  await setSynchronousStandbys('ANY 1 (ghost)');
  try {
    await rejectsUnconfirmed(chat.send(alice, during), 'a new send waits for the quorum and is refused');
    // PostgreSQL kept that row on the primary; a retry finds it and must still wait for a standby.
    await rejectsUnconfirmed(chat.send(alice, during), 'its retry is refused as well');
    // So must the retry of a message committed before the standbys went away: its answer would be
    // the same whether or not the commit reached a standby, so it is held to the same rule.
    await rejectsUnconfirmed(chat.send(alice, before), 'a retry of an older message waits too');
    // statement_timeout cannot end a wait for a standby; the app's own cancel did, so no backend
    // is left waiting for one after its client gave up.
    const waiting = await superuserQuery<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'SyncRep'");
    assert.equal(waiting[0]!.n, 0, 'no backend still waits for a standby');
  } finally {
    await setSynchronousStandbys('');
  }

  const retried = await chat.send(alice, during);
  assert.equal(retried.created, false, 'the row kept by the cancelled commit is the one returned');
  assert.equal(retried.message.body, during.body);
  const history = await chat.history(alice, { conversationId: conversation.id });
  assert.deepEqual(history.messages.map((m) => m.body), [before.body, during.body], 'stored once each, seq without gap');
});
