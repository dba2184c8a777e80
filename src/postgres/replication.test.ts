// Proves the replication primitives on real servers: a standby cloned with pg_basebackup streams
// through its slot as a quorum-synchronous standby, is promoted after the primary is killed -9,
// and the old primary rejoins the new one as a standby after pg_rewind.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  cloneFromPrimary,
  ensureReplicationRole,
  ensureSlots,
  findPgBinaries,
  freePort,
  parseLsn,
  formatLsn,
  probeReplication,
  promoteServer,
  queryServer,
  quorumStandbyNames,
  setSynchronousStandbys,
  replicationRoleName,
  rewindFrom,
  serverAccount,
  standbySettings,
  startServer,
  startThrowawayServer,
  stopServer,
  writeServerSettings,
  writeStandbySignal,
  type Endpoint,
  type ServerHandle,
} from './postgres.ts';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  if (process.env.KEEP) return;
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}: ${String(last)}`);
}

test('LSNs parse and format both ways', () => {
  assert.equal(parseLsn('16/B374D848'), 0x16b374d848n);
  assert.equal(formatLsn(parseLsn('0/3000148')), '0/3000148');
});

test('clone, stream synchronously, promote after kill -9, rewind the old primary', async () => {
  const bin = findPgBinaries();
  const account = serverAccount('postgres');
  const primary = await startThrowawayServer({ settings: { synchronous_commit: 'on' } });
  cleanups.push(() => primary.stop());
  const superPrimary: Endpoint = { port: primary.port, user: 'postgres', password: primary.superuserPassword };
  const replicationPassword = randomBytes(12).toString('hex');
  await ensureReplicationRole(superPrimary, replicationPassword);
  await ensureSlots(superPrimary, ['node2', 'node1']);
  await queryServer(superPrimary, 'CREATE TABLE t (id int primary key)');

  // The standby: cloned, configured, started.
  const standbyDir = join(primary.dir, 'standby');
  const standbyPort = await freePort();
  const replication = (port: number): Endpoint => ({ port, user: replicationRoleName, password: replicationPassword });
  await cloneFromPrimary({ bin, account, dataDir: standbyDir, source: replication(primary.port) });
  writeServerSettings(standbyDir, { port: standbyPort, maxConnections: 100, sharedBuffers: '32MB', extra: { fsync: false, ...standbySettings({ nodeName: 'node2', primary: replication(primary.port) }) } }, account);
  writeStandbySignal(standbyDir, account);
  const standby: ServerHandle = await startServer({ bin, dataDir: standbyDir, account, port: standbyPort, logFile: join(primary.dir, 'standby.log'), superuserPassword: primary.superuserPassword });
  cleanups.push(() => stopServer(standby, { timeoutMs: 5000 }));
  const superStandby: Endpoint = { port: standbyPort, user: 'postgres', password: primary.superuserPassword };

  await setSynchronousStandbys(superPrimary, quorumStandbyNames(1, ['node2']));
  const replicas = await until('a quorum standby', async () => {
    const probe = await probeReplication(superPrimary);
    return probe.replicas.find((r) => r.name === 'node2' && r.state === 'streaming' && r.syncState === 'quorum') ? probe.replicas : undefined;
  });
  assert.equal(replicas.length, 1);
  assert.equal(quorumStandbyNames(1, ['node2', 'node3']), 'ANY 1 ("node2", "node3")');
  // A synchronous commit returns only once node2 has flushed it: it is on the standby already.
  await queryServer(superPrimary, 'INSERT INTO t VALUES (1)');
  const standbyProbe = await probeReplication(superStandby);
  assert.equal(standbyProbe.role, 'standby');
  assert.equal(standbyProbe.receiver?.status, 'streaming');
  assert.ok(parseLsn(standbyProbe.flushLsn!) >= parseLsn((await probeReplication(superPrimary)).replicas[0]!.flushLsn!));
  await until('row 1 replayed', async () => ((await queryServer(superStandby, 'SELECT 1 FROM t WHERE id = 1')).length ? true : undefined));

  // kill -9 the primary, promote the standby, write there.
  primary.handle.child.kill('SIGKILL');
  await primary.handle.exited;
  await promoteServer(superStandby);
  const promoted = await probeReplication(superStandby);
  assert.equal(promoted.role, 'primary');
  assert.equal(promoted.timeline, standbyProbe.timeline + 1);
  // It has no standby yet: make it asynchronous so the write below does not wait.
  await setSynchronousStandbys(superStandby, '');
  await queryServer(superStandby, 'INSERT INTO t VALUES (2)');

  // The old primary rejoins as a standby of the new one after pg_rewind.
  const oldDir = primary.handle.dataDir;
  await ensureSlots(superStandby, ['node1']);
  await rewindFrom({ bin, account, dataDir: oldDir, source: { port: standbyPort, user: 'postgres', password: primary.superuserPassword } });
  writeServerSettings(oldDir, { port: primary.port, maxConnections: 100, sharedBuffers: '32MB', extra: { fsync: false, ...standbySettings({ nodeName: 'node1', primary: replication(standbyPort) }) } }, account);
  writeStandbySignal(oldDir, account);
  const rejoined = await startServer({ bin, dataDir: oldDir, account, port: primary.port, logFile: join(primary.dir, 'rejoined.log'), superuserPassword: primary.superuserPassword });
  cleanups.push(() => stopServer(rejoined, { timeoutMs: 5000 }));
  const superOld: Endpoint = { port: primary.port, user: 'postgres', password: primary.superuserPassword };
  await until('row 2 on the rejoined node', async () => ((await queryServer(superOld, 'SELECT 1 FROM t WHERE id = 2')).length ? true : undefined));
  const oldProbe = await probeReplication(superOld);
  assert.equal(oldProbe.role, 'standby');
  assert.equal(oldProbe.timeline, promoted.timeline);
});
