// Proves the pool survives its server dying under it: a connection terminated while checked out
// (what every connection gets when the primary goes away in a failover) fails the work under way
// with storage_unavailable instead of crashing the process with an unhandled 'error' event, and the
// pool serves the next query on a fresh connection.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { isParleyError } from '../errors/errors.ts';
import { startThrowawayServer, type ThrowawayServer } from '../postgres/postgres.ts';
import { classifyDatabaseError, createDatabase, neverReachedServer, type Database } from './database.ts';
import { createRoutedDatabase } from './routed.ts';

let server: ThrowawayServer;
let db: Database;

before(async () => {
  server = await startThrowawayServer();
  db = createDatabase({ url: server.superuserUrl, poolSize: 2, queryTimeoutMs: 5000, connectTimeoutMs: 5000 });
});
after(async () => {
  await db?.close();
  await server?.stop();
});

async function terminate(pid: number): Promise<void> {
  const admin = new pg.Client({ connectionString: server.superuserUrl });
  await admin.connect();
  try {
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
  } finally {
    await admin.end();
  }
}

test('a connection terminated while checked out fails its transaction with 503, and the pool goes on', async () => {
  await assert.rejects(
    db.transaction(async (tx) => {
      const pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await terminate(pid);
      // The FATAL arrives while no query runs on this client: an 'error' event, not a rejection.
      await new Promise((resolve) => setTimeout(resolve, 300));
    }),
    (error: unknown) => isParleyError(error) && error.code === 'storage_unavailable',
  );
  const answer = await db.query<{ one: number }>('SELECT 1 AS one');
  assert.equal(answer.rows[0]!.one, 1);
});

test('a routed database waits for a primary up to failoverWaitMs, then answers 503; refused connections are waited out too', async () => {
  // Proves the app server holds a query through a failover instead of failing it, within a bound.
  const waiting = createRoutedDatabase(
    [
      { name: 'gone', url: 'postgres://postgres:x@127.0.0.1:1/postgres' },
      { name: 'live', url: server.superuserUrl },
    ],
    { poolSize: 2, queryTimeoutMs: 5000, connectTimeoutMs: 2000, failoverWaitMs: 3000 },
  );
  try {
    // No primary yet: the query waits until one is named.
    setTimeout(() => waiting.setPrimary('live'), 200);
    assert.equal((await waiting.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
    // A primary that refuses connections (port 1): waited out until the lease names another.
    waiting.setPrimary('gone');
    setTimeout(() => waiting.setPrimary('live'), 300);
    assert.equal((await waiting.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
    // Nobody comes: 503 once the bound has passed.
    waiting.setPrimary(undefined);
    await assert.rejects(waiting.query('SELECT 1'), (error: unknown) => isParleyError(error) && error.code === 'storage_unavailable');
  } finally {
    await waiting.close();
  }
  const impatient = createRoutedDatabase([{ name: 'live', url: server.superuserUrl }], { poolSize: 1, queryTimeoutMs: 5000, connectTimeoutMs: 2000 });
  try {
    let outcome: unknown = 'pending';
    void impatient.query('SELECT 1').then(
      () => (outcome = 'answered'),
      (error: unknown) => (outcome = error),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(isParleyError(outcome) && outcome.code === 'storage_unavailable', `without failoverWaitMs, no primary fails at once (got ${String(outcome)})`);
  } finally {
    await impatient.close();
  }
});

test('a routed read whose connection is cut mid-way runs again; a write does not', async () => {
  // Proves only statements that are safe to repeat are repeated after a lost connection.
  const routed = createRoutedDatabase([{ name: 'live', url: server.superuserUrl }], { poolSize: 2, queryTimeoutMs: 5000, connectTimeoutMs: 2000, failoverWaitMs: 3000 });
  routed.setPrimary('live');
  const cut = async (marker: string) => {
    // Terminates the backend running the statement tagged `marker` once it shows up.
    for (let i = 0; i < 100; i++) {
      const rows = await superuserRows<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE query LIKE '%${marker}%' AND pid <> pg_backend_pid()`);
      if (rows[0]) return void (await terminate(rows[0].pid));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`no backend ran ${marker}`);
  };
  try {
    const read = routed.query<{ one: number }>("SELECT 1 AS one, pg_sleep(0.5), 'read-marker' AS m").then((r) => r.rows[0]?.one, (error: unknown) => error);
    await cut('read-marker');
    assert.equal(await read, 1, 'the read ran again and answered');
    await routed.query('CREATE TABLE IF NOT EXISTS rerun_probe (n int)');
    const write = routed.query("INSERT INTO rerun_probe SELECT 1 FROM pg_sleep(0.5) WHERE 'write-marker' <> ''").then(() => 'written', (error: unknown) => error);
    await cut('write-marker');
    const outcome = await write;
    assert.ok(isParleyError(outcome) && outcome.code === 'storage_unavailable', `the write is not run again: ${String(outcome)}`);
  } finally {
    await routed.close();
  }
});

test('a write refused by a node in recovery is waited out and runs on the next primary', async () => {
  // Proves a switchover's race is a pause, not an error: the app still routes to the old primary,
  // now a standby, and its writes are refused there (CI saw "cannot assign TransactionIds during
  // recovery" from parley.send_message). Recovery itself is stood in for by a role whose
  // transactions are read-only, which PostgreSQL refuses with the same 25006 a standby gives.
  await superuserRows("DO $$ BEGIN CREATE ROLE read_only_probe LOGIN PASSWORD 'probe'; EXCEPTION WHEN duplicate_object THEN NULL; END $$");
  await superuserRows('ALTER ROLE read_only_probe SET default_transaction_read_only = on');
  await superuserRows('CREATE TABLE IF NOT EXISTS recovery_probe (n int)');
  await superuserRows('GRANT ALL ON recovery_probe TO read_only_probe');
  const standbyUrl = new URL(server.superuserUrl);
  standbyUrl.username = 'read_only_probe';
  standbyUrl.password = 'probe';
  const routed = createRoutedDatabase(
    [
      { name: 'demoted', url: standbyUrl.toString() },
      { name: 'promoted', url: server.superuserUrl },
    ],
    { poolSize: 2, queryTimeoutMs: 5000, connectTimeoutMs: 2000, failoverWaitMs: 3000 },
  );
  try {
    routed.setPrimary('demoted');
    setTimeout(() => routed.setPrimary('promoted'), 300);
    await routed.query('INSERT INTO recovery_probe VALUES (7)');
    const rows = await superuserRows<{ n: number }>('SELECT n FROM recovery_probe');
    assert.deepEqual(rows.map((r) => r.n), [7], 'written once, on the node named next');
  } finally {
    await routed.close();
  }
  // The refusal a standby gives a function that needs a transaction id is the same kind of answer.
  const xid = classifyDatabaseError(Object.assign(new Error('cannot assign TransactionIds during recovery'), { code: 'XX000' }));
  assert.ok(isParleyError(xid) && xid.code === 'storage_unavailable', `classified as storage_unavailable: ${String(xid)}`);
  const other = classifyDatabaseError(Object.assign(new Error('could not open file'), { code: 'XX000' }));
  assert.ok(!isParleyError(other), 'another internal error stays a programming error');
  assert.equal(neverReachedServer(other), false);
});

async function superuserRows<R extends pg.QueryResultRow>(text: string): Promise<R[]> {
  const admin = new pg.Client({ connectionString: server.superuserUrl });
  await admin.connect();
  try {
    return (await admin.query<R>(text)).rows;
  } finally {
    await admin.end();
  }
}
