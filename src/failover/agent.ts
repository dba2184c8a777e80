// The agent: the imperative shell around `decide()`. One per PostgreSQL node, its own OS process.
// Every tick it observes its PostgreSQL, reads the lease, the maintenance record and the other
// members from the lease store, calls decide(), performs the actions in order (stopping at the first
// that fails; alerts always go out), publishes its state and journals the reason when it changes.
// It owns its PostgreSQL: it starts it, and adopts one left running by an earlier agent.
import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  cloneFromPrimary,
  ensureSlots,
  probeReplication,
  promoteServer,
  queryServer,
  quorumStandbyNames,
  readControlFile,
  formatLsn,
  reloadServer,
  replicationRoleName,
  rewindFrom,
  runningPid,
  setSynchronousStandbys,
  standbySettings,
  startServer,
  stopServer,
  writeServerSettings,
  writeStandbySignal,
  type Endpoint,
  type OsAccount,
  type PgBinaries,
  type ServerHandle,
} from '../postgres/postgres.ts';
import { decide, desiredSynchronous, memberStateOf, settleSynchronous, type SynchronousSettling } from './decide.ts';
import { isLeaseStoreUnavailable, type Entry, type LeaseStore } from './lease-store.ts';
import type {
  Action,
  DecideConfig,
  LeaseRecord,
  LeaseView,
  MaintenanceRecord,
  ManualFailoverRequest,
  MemberState,
  NodeObservation,
  SwitchoverRequest,
  SynchronousConfig,
  TimelineSwitch,
  View,
} from './types.ts';

/** Keys in the lease store. The leader record has no TTL: it must outlive its term. */
export const leaseKeys = { leader: 'leader', maintenance: 'maintenance', switchover: 'switchover', failover: 'failover', memberPrefix: 'members/' } as const;

/** The value stored under `failover` by `parley failover`; its target adds the answer. */
export interface StoredManualFailover {
  to: string;
  force: boolean;
  reason: string;
  requestedBy: string;
  requestedAtMs: number;
  expiresAtMs: number;
  answer?: { outcome: 'accepted' | 'refused'; detail: string; atMs: number };
}

/** The value stored under `switchover` by `parley switchover`; the handing-over agent adds the result. */
export interface StoredSwitchover {
  from: string;
  to: string;
  reason: string;
  requestedBy: string;
  requestedAtMs: number;
  expiresAtMs: number;
  result?: { outcome: 'handed over' | 'rolled back'; detail: string; atMs: number };
}

// A handover stops the primary and waits for the target: the lease is extended to cover it.
const handoverBudgetMs = 30_000;
// How long the target has to confirm every byte of the stopped primary's WAL.
const handoverConfirmMs = 5_000;

/** One member of the cluster as every agent knows it. */
export interface MemberAddress {
  name: string;
  port: number;
  dataDir: string;
}

/** What an agent needs to run. */
export interface AgentOptions {
  name: string;
  members: readonly MemberAddress[];
  store: LeaseStore;
  decideConfig: DecideConfig;
  bin: PgBinaries;
  account: OsAccount | undefined;
  superuserPassword: string;
  replicationPassword: string;
  settings: { maxConnections: number; sharedBuffers: string };
  logFile: string;
  /** Append-only journal (JSON lines) shared by every agent of the cluster. */
  journalFile: string;
  /** One readable line per decision change. */
  log: (line: string) => void;
  signal: AbortSignal;
}

/** The value stored under `leader`. Times are wall-clock ms (one machine shares the clock). */
interface StoredLease {
  holder: string;
  acquiredAtMs: number;
  expiresAtMs: number;
  released: boolean;
  rolledBack: boolean;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** "16/B374D848" → bytes, as a number (exact to 2^53). */
function lsnBytes(lsn: string | null | undefined): number {
  if (!lsn) return 0;
  const [high, low] = lsn.split('/');
  return parseInt(high ?? '0', 16) * 0x1_0000_0000 + parseInt(low ?? '0', 16);
}

/** Parses `synchronous_standby_names` as written by quorumStandbyNames. */
export function parseSynchronous(value: string): SynchronousConfig | null {
  const match = /^\s*ANY\s+(\d+)\s*\((.*)\)\s*$/i.exec(value);
  if (!match) return null;
  const standbys = match[2]!.split(',').map((s) => s.trim().replace(/^"|"$/g, '')).filter(Boolean);
  return { quorum: Number(match[1]), standbys };
}

/** Reads the history of `timeline` from the data directory (empty for timeline 1). */
export function readTimelineHistory(dataDir: string, timeline: number): TimelineSwitch[] {
  if (timeline <= 1) return [];
  const file = historyFile(dataDir, timeline);
  if (!existsSync(file)) return [];
  const out: TimelineSwitch[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^\s*(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (match) out.push({ timeline: Number(match[1]), endLsn: lsnBytes(match[2]) });
  }
  return out;
}

function historyFile(dataDir: string, timeline: number): string {
  return join(dataDir, 'pg_wal', `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`);
}

function hasHistory(dataDir: string, timeline: number): boolean {
  return timeline <= 1 || existsSync(historyFile(dataDir, timeline));
}

/** The highest timeline with a history file in pg_wal, for a stopped server. */
function highestTimeline(dataDir: string): number {
  try {
    let best = 1;
    for (const name of readdirSync(join(dataDir, 'pg_wal'))) {
      const match = /^([0-9A-F]{8})\.history$/.exec(name);
      if (match) best = Math.max(best, parseInt(match[1]!, 16));
    }
    return best;
  } catch {
    return 1;
  }
}

/** Runs the agent loop until `signal` aborts. Never throws for a failed tick: it logs and goes on. */
export async function runAgent(options: AgentOptions): Promise<void> {
  const me = options.members.find((m) => m.name === options.name);
  if (!me) throw new Error(`${options.name} is not a member (${options.members.map((m) => m.name).join(', ')})`);
  const stateFile = join(me.dataDir, '..', 'agent-state.json');
  const superuser = (port: number): Endpoint => ({ port, user: 'postgres', password: options.superuserPassword });
  const replication = (port: number): Endpoint => ({ port, user: replicationRoleName, password: options.replicationPassword });
  const portOf = (name: string): number => {
    const member = options.members.find((m) => m.name === name);
    if (!member) throw new Error(`unknown member ${name}`);
    return member.port;
  };

  let handle: ServerHandle | undefined;
  let upstream: string | null = null;
  try {
    upstream = (JSON.parse(readFileSync(stateFile, 'utf8')) as { upstream: string | null }).upstream;
  } catch {
    upstream = null;
  }
  let lastWal = { timeline: 1, flushedLsn: 0, replayedLsn: 0 };
  // On a primary: each streaming standby's flush position (pg_stat_replication), and what this
  // agent knows of a narrowing of the synchronous set (decide.ts settleSynchronous).
  let replicaFlushed = new Map<string, number>();
  let syncSettling: SynchronousSettling | null = null;
  let lastPublishedSync = '';
  let lastKnownLease: LeaseRecord | null = null;
  let lastMaintenance: MaintenanceRecord | null = null;
  let lastReason = '';
  let primarySeen: string | null = null;
  // Since when this agent has seen its PostgreSQL not answering (null while it answers).
  let downSinceMs: number | null = null;

  function journal(kind: string, detail: Record<string, unknown>): void {
    try {
      appendFileSync(options.journalFile, `${JSON.stringify({ at: new Date().toISOString(), node: options.name, kind, ...detail })}\n`);
    } catch {
      // The journal is for people; a full disk must not stop failover.
    }
  }

  function saveUpstream(value: string | null): void {
    upstream = value;
    writeFileSync(stateFile, `${JSON.stringify({ upstream })}\n`);
  }

  function writeSettings(follow: string | null): void {
    writeServerSettings(
      me!.dataDir,
      {
        port: me!.port,
        maxConnections: options.settings.maxConnections,
        sharedBuffers: options.settings.sharedBuffers,
        extra: follow ? standbySettings({ nodeName: options.name, primary: replication(portOf(follow)) }) : { hot_standby: true },
      },
      options.account,
    );
  }

  async function observe(): Promise<NodeObservation> {
    const dataDir = me!.dataDir;
    const fileRole = existsSync(join(dataDir, 'standby.signal')) ? 'standby' : 'primary';
    try {
      const probe = await probeReplication(superuser(me!.port), 1500);
      const flushed = probe.role === 'primary' ? lsnBytes(probe.flushLsn) : Math.max(lsnBytes(probe.flushLsn), lsnBytes(probe.replayLsn));
      // A standby's control file names an older timeline until its next restartpoint, and the WAL
      // receiver (which knows the newer one) is gone as soon as its primary is: keep the newest
      // timeline seen, when its history is on disk to say where it began. A node's timeline only
      // ever rises; a rewind or clone forgets it (see 'rewind').
      const timeline = probe.role === 'standby' && lastWal.timeline > probe.timeline && hasHistory(dataDir, lastWal.timeline) ? lastWal.timeline : probe.timeline;
      lastWal = { timeline, flushedLsn: flushed, replayedLsn: probe.role === 'primary' ? flushed : lsnBytes(probe.replayLsn) };
      downSinceMs = null;
      replicaFlushed = new Map(probe.replicas.filter((r) => r.state === 'streaming' && r.flushLsn !== null).map((r) => [r.name, lsnBytes(r.flushLsn)]));
      const streamingFrom = probe.receiver?.status === 'streaming' && probe.receiver.senderPort !== null
        ? options.members.find((m) => m.port === probe.receiver!.senderPort)?.name ?? null
        : null;
      return {
        name: options.name,
        running: true,
        downSinceMs,
        role: probe.role,
        timeline,
        history: readTimelineHistory(dataDir, timeline),
        flushedLsn: lastWal.flushedLsn,
        replayedLsn: lastWal.replayedLsn,
        upstream: probe.role === 'standby' ? upstream : null,
        streaming: probe.role === 'standby' && streamingFrom !== null && streamingFrom === upstream,
        synchronous: parseSynchronous(probe.synchronousStandbyNames),
      };
    } catch {
      replicaFlushed = new Map();
      const timeline = Math.max(lastWal.timeline, highestTimeline(dataDir));
      downSinceMs ??= Date.now();
      return {
        name: options.name,
        running: false,
        downSinceMs,
        role: fileRole,
        timeline,
        history: readTimelineHistory(dataDir, timeline),
        flushedLsn: lastWal.flushedLsn,
        replayedLsn: lastWal.replayedLsn,
        upstream: fileRole === 'standby' ? upstream : null,
        streaming: false,
        synchronous: null,
      };
    }
  }

  function toLease(entry: Entry | undefined): LeaseRecord | null {
    if (!entry) return null;
    const value = JSON.parse(entry.value) as StoredLease;
    return { holder: value.holder, revision: entry.revision, acquiredAtMs: value.acquiredAtMs, expiresAtMs: value.expiresAtMs, released: value.released, rolledBack: value.rolledBack };
  }

  async function readStore(): Promise<{
    lease: LeaseView;
    maintenance: MaintenanceRecord | null;
    members: MemberState[];
    switchover: SwitchoverRequest | null;
    manualFailover: ManualFailoverRequest | null;
  }> {
    try {
      const [leader, maintenance, members, switchover, failover] = await Promise.all([
        options.store.get(leaseKeys.leader),
        options.store.get(leaseKeys.maintenance),
        options.store.list(leaseKeys.memberPrefix),
        options.store.get(leaseKeys.switchover),
        options.store.get(leaseKeys.failover),
      ]);
      const manual = failover ? (JSON.parse(failover.value) as StoredManualFailover) : undefined;
      const manualPending = manual !== undefined && manual.answer === undefined && manual.expiresAtMs > Date.now();
      const request = switchover ? (JSON.parse(switchover.value) as StoredSwitchover) : undefined;
      lastKnownLease = toLease(leader);
      lastMaintenance = maintenance
        ? { revision: maintenance.revision, ...(JSON.parse(maintenance.value) as Omit<MaintenanceRecord, 'revision'>) }
        : null;
      const states = members
        .map((entry) => JSON.parse(entry.value) as MemberState)
        .filter((state) => state.name !== options.name && options.members.some((m) => m.name === state.name));
      const pending = request !== undefined && request.result === undefined && request.expiresAtMs > Date.now();
      return {
        lease: { known: true, record: lastKnownLease },
        maintenance: lastMaintenance,
        members: states,
        switchover: pending ? { revision: switchover!.revision, from: request.from, to: request.to, expiresAtMs: request.expiresAtMs } : null,
        manualFailover: manualPending ? { revision: failover!.revision, to: manual.to, force: manual.force, expiresAtMs: manual.expiresAtMs } : null,
      };
    } catch (error) {
      if (!isLeaseStoreUnavailable(error)) throw error;
      return { lease: { known: false, lastKnown: lastKnownLease }, maintenance: lastMaintenance, members: [], switchover: null, manualFailover: null };
    }
  }

  async function stopPostgres(mode: 'fast' | 'immediate'): Promise<void> {
    if (handle) {
      if (mode === 'immediate') handle.child.kill('SIGQUIT');
      await stopServer(handle, { timeoutMs: mode === 'fast' ? 10_000 : 3000 });
      handle = undefined;
      return;
    }
    // A server adopted from an earlier agent: signal it by the pid in postmaster.pid.
    const pid = runningPid(me!.dataDir);
    if (pid === undefined) return;
    process.kill(pid, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    const deadline = Date.now() + 15_000;
    while (runningPid(me!.dataDir) !== undefined && Date.now() < deadline) await sleep(100, new AbortController().signal);
    if (runningPid(me!.dataDir) !== undefined) process.kill(pid, 'SIGKILL');
  }

  async function startPostgres(): Promise<void> {
    handle = await startServer({
      bin: options.bin,
      dataDir: me!.dataDir,
      account: options.account,
      port: me!.port,
      logFile: options.logFile,
      superuserPassword: options.superuserPassword,
      readyTimeoutMs: 60_000,
    });
  }

  function dropPromotion(): void {
    rmSync(join(me!.dataDir, 'promote.signal'), { force: true });
  }

  /** Restarts (or starts) PostgreSQL as a standby of `follow` (null: of nobody). */
  async function restartAsStandby(follow: string | null, running: boolean): Promise<void> {
    if (running) await stopPostgres('fast');
    dropPromotion();
    writeSettings(follow);
    writeStandbySignal(me!.dataDir, options.account);
    saveUpstream(follow);
    await startPostgres();
  }

  /** Writes the outcome onto the switchover request (compare-and-set; a lost write is harmless). */
  async function finishSwitchover(revision: string, outcome: 'handed over' | 'rolled back', detail: string): Promise<void> {
    const entry = await options.store.get(leaseKeys.switchover).catch(() => undefined);
    if (!entry || entry.revision !== revision) return;
    const request = JSON.parse(entry.value) as StoredSwitchover;
    await options.store.update(leaseKeys.switchover, JSON.stringify({ ...request, result: { outcome, detail, atMs: Date.now() } }), revision).catch(() => undefined);
    journal('switchover', { outcome, to: request.to, detail, requestedBy: request.requestedBy, reason: request.reason });
    options.log(`switchover to ${request.to}: ${outcome} (${detail})`);
  }

  /**
   * Waits (at most handoverConfirmMs) until `to` has received past the position `target()` gives
   * (read once); null when it has, else what it had.
   */
  async function targetReceives(to: string, target: () => Promise<number>): Promise<string | null> {
    const goal = await target();
    const deadline = Date.now() + handoverConfirmMs;
    let received = 0;
    while (Date.now() < deadline) {
      const rows = await queryServer<{ lsn: string | null }>(superuser(portOf(to)), 'SELECT pg_last_wal_receive_lsn()::text AS lsn', [], 1000).catch(() => []);
      received = lsnBytes(rows[0]?.lsn);
      if (received >= goal) return null;
      await sleep(100, new AbortController().signal);
    }
    return `received up to ${formatLsn(BigInt(received))} of ${formatLsn(BigInt(goal))}`;
  }

  /**
   * The handover of a switchover (types.ts, 'handOver'): extend the lease to cover it, stop taking
   * writes with a clean shutdown (which streams every byte to connected standbys), check that the
   * target received all of it, hand it the lease, and restart as its standby. Any failure before
   * the lease changes hands restarts this node as the primary it still is.
   */
  async function handOver(action: Extract<Action, { type: 'handOver' }>): Promise<boolean> {
    const current = lastKnownLease;
    if (current === null || current.revision !== action.revision) return false;
    const extended = await options.store.update(
      leaseKeys.leader,
      JSON.stringify({ holder: options.name, acquiredAtMs: current.acquiredAtMs, expiresAtMs: Date.now() + handoverBudgetMs, released: false, rolledBack: false } satisfies StoredLease),
      action.revision,
    );
    if (!extended) return false;
    lastKnownLease = toLease(extended);
    // The lease now covers the whole handover (no tick renews it meanwhile). Before writes stop,
    // the target must be keeping up: a frozen or slow WAL receiver would hold the clean shutdown,
    // and every write, until the sender times out.
    const caughtUp = await targetReceives(action.to, async () => {
      const rows = await queryServer<{ lsn: string }>(superuser(me!.port), 'SELECT pg_current_wal_flush_lsn()::text AS lsn', [], 1000);
      return lsnBytes(rows[0]?.lsn);
    });
    if (caughtUp !== null) {
      await finishSwitchover(action.switchoverRevision, 'rolled back', `${action.to} is not keeping up (${caughtUp}); writes were not stopped`);
      return false;
    }
    journal('action', { action: 'handOver', step: 'stopping to hand over', target: action.to });
    await stopPostgres('fast');
    let detail = '';
    try {
      const control = await readControlFile(options.bin, options.account, me!.dataDir);
      if (control.state !== 'shut down') throw new Error(`the server stopped as "${control.state}", not cleanly`);
      // Past the start of the shutdown checkpoint record: the whole record, the last one written.
      const missing = await targetReceives(action.to, async () => lsnBytes(control.checkpointLsn) + 1);
      if (missing !== null) throw new Error(`${action.to} ${missing} after the clean shutdown`);
      const handed = await options.store.update(
        leaseKeys.leader,
        JSON.stringify({ holder: action.to, acquiredAtMs: Date.now(), expiresAtMs: Date.now() + options.decideConfig.leaseTtlMs, released: false, rolledBack: false } satisfies StoredLease),
        extended.revision,
      );
      if (!handed) throw new Error('the lease changed meanwhile');
      lastKnownLease = toLease(handed);
      detail = `${action.to} had every byte up to ${control.checkpointLsn}`;
    } catch (error) {
      detail = (error as Error).message;
      options.log(`handover to ${action.to} failed (${detail}); starting again as the primary`);
      dropPromotion();
      rmSync(join(me!.dataDir, 'standby.signal'), { force: true });
      await startPostgres();
      await finishSwitchover(action.switchoverRevision, 'rolled back', detail);
      return false;
    }
    await restartAsStandby(action.to, false);
    await finishSwitchover(action.switchoverRevision, 'handed over', detail);
    return true;
  }

  async function act(action: Action, node: NodeObservation, now: number): Promise<boolean> {
    const store = options.store;
    switch (action.type) {
      case 'renewLease':
      case 'releaseLease':
      case 'acquireLease': {
        const current = lastKnownLease;
        const value: StoredLease =
          action.type === 'renewLease'
            ? { holder: options.name, acquiredAtMs: current?.acquiredAtMs ?? now, expiresAtMs: now + action.ttlMs, released: false, rolledBack: false }
            : action.type === 'releaseLease'
              ? { holder: options.name, acquiredAtMs: current?.acquiredAtMs ?? now, expiresAtMs: now, released: true, rolledBack: action.rollback }
              : { holder: options.name, acquiredAtMs: now, expiresAtMs: now + action.ttlMs, released: false, rolledBack: false };
        const guards = action.type === 'acquireLease' ? [{ key: leaseKeys.maintenance, revision: action.maintenanceRevision }] : undefined;
        const revision = action.revision;
        const entry =
          revision === null
            ? await store.create(leaseKeys.leader, JSON.stringify(value), { guards })
            : await store.update(leaseKeys.leader, JSON.stringify(value), revision, { guards });
        if (entry) lastKnownLease = toLease(entry);
        return entry !== undefined;
      }
      case 'promote': {
        // The quorum is in force before the first write: otherwise the new primary would
        // acknowledge commits alone until the next tick set it (invariant 1).
        const desired = desiredSynchronous(options.decideConfig, options.name);
        await setSynchronousStandbys(superuser(me!.port), desired ? quorumStandbyNames(desired.quorum, desired.standbys) : '');
        await promoteServer(superuser(me!.port), 10);
        saveUpstream(null);
        const others = options.members.filter((m) => m.name !== options.name).map((m) => m.name);
        await ensureSlots(superuser(me!.port), others);
        // pg_rewind of the old primary reads this node's control file: checkpoint so it names the new timeline.
        void queryServer(superuser(me!.port), 'CHECKPOINT', [], 60_000).catch(() => undefined);
        return true;
      }
      case 'demote':
        await stopPostgres('immediate');
        await restartAsStandby(null, false);
        return true;
      case 'follow':
        if (node.running && node.role === 'standby') {
          dropPromotion();
          writeSettings(action.node);
          saveUpstream(action.node);
          await reloadServer(superuser(me!.port));
          return true;
        }
        await restartAsStandby(action.node, node.running);
        return true;
      case 'detach':
        dropPromotion();
        writeSettings(null);
        saveUpstream(null);
        if (node.running) await reloadServer(superuser(me!.port));
        return true;
      case 'rewind': {
        const source = portOf(action.node);
        // Nothing to rewind from: keep this node as it is (running, if it runs) and try again later.
        await queryServer(superuser(source), 'SELECT 1', [], 2000);
        await stopPostgres('fast');
        dropPromotion();
        lastWal = { timeline: 1, flushedLsn: 0, replayedLsn: 0 };
        try {
          await rewindFrom({ bin: options.bin, account: options.account, dataDir: me!.dataDir, source: superuser(source) });
          journal('action', { action: 'rewind', from: action.node, result: 'rewound' });
        } catch (error) {
          options.log(`pg_rewind from ${action.node} failed (${(error as Error).message}); re-cloning`);
          await cloneFromPrimary({ bin: options.bin, account: options.account, dataDir: me!.dataDir, source: replication(source) });
          journal('action', { action: 'rewind', from: action.node, result: 're-cloned' });
        }
        await restartAsStandby(action.node, false);
        return true;
      }
      case 'start':
        if (action.role === 'standby') {
          await restartAsStandby(null, false);
        } else {
          dropPromotion();
          writeSettings(null);
          rmSync(join(me!.dataDir, 'standby.signal'), { force: true });
          saveUpstream(null);
          await startPostgres();
        }
        return true;
      case 'handOver':
        return handOver(action);
      case 'answerFailover': {
        const entry = await options.store.get(leaseKeys.failover);
        if (!entry || entry.revision !== action.revision) return true;
        const request = JSON.parse(entry.value) as StoredManualFailover;
        await options.store.update(leaseKeys.failover, JSON.stringify({ ...request, answer: { outcome: action.outcome, detail: action.detail, atMs: Date.now() } }), action.revision);
        journal('failover', { outcome: action.outcome, force: request.force, detail: action.detail, requestedBy: request.requestedBy, reason: request.reason });
        options.log(`manual failover to me: ${action.outcome} (${action.detail})`);
        return true;
      }
      case 'setSynchronousStandbyNames':
        await setSynchronousStandbys(superuser(me!.port), action.config ? quorumStandbyNames(action.config.quorum, action.config.standbys) : '');
        // The WAL senders, which release waiting commits, take the new setting on their next loop
        // (SIGHUP sets their latch). Give them that before the observation whose flush position
        // settleSynchronous takes as the narrowing's point: every commit released under the old
        // setting lies below it.
        await sleep(100, options.signal);
        return true;
      case 'alert':
        journal('alert', { code: action.code, severity: action.severity, message: action.message });
        return true;
    }
  }

  // What this agent last saw of the maintenance record, to journal each change once.
  let maintenanceSeen: { revision: string; active: boolean } | null = null;
  function noteMaintenance(record: MaintenanceRecord | null, now: number): void {
    const active = record !== null && record.active && record.expiresAtMs > now;
    if (record !== null && record.revision !== maintenanceSeen?.revision) {
      journal('maintenance', { event: record.active ? 'acknowledged' : 'ended', revision: record.revision, reason: record.reason, owner: record.owner, expiresAt: new Date(record.expiresAtMs).toISOString() });
      options.log(record.active ? `maintenance acknowledged: ${record.reason} (by ${record.owner}), until ${new Date(record.expiresAtMs).toISOString()}` : `maintenance ended: ${record.reason} (by ${record.owner})`);
    } else if (record !== null && maintenanceSeen?.active === true && !active && record.active) {
      journal('maintenance', { event: 'expired', revision: record.revision, reason: record.reason, owner: record.owner });
      options.log(`maintenance expired: ${record.reason} (by ${record.owner}) reached its ttl`);
    }
    maintenanceSeen = record === null ? null : { revision: record.revision, active };
    // Downtime under maintenance is the operator's: the restart timeout counts from its end.
    if (active && (record!.node ?? null) !== null && record!.node !== options.name) return;
    if (active && downSinceMs !== null) downSinceMs = now;
  }

  journal('agent', { event: 'started', pid: process.pid });
  while (!options.signal.aborted) {
    const tickStart = Date.now();
    try {
      const node = await observe();
      const stored = await readStore();
      const now = Date.now();
      noteMaintenance(stored.maintenance, now);
      const view: View = {
        node,
        lease: stored.lease,
        maintenance: stored.maintenance,
        members: stored.members,
        failsafe: [],
        switchover: stored.switchover,
        manualFailover: stored.manualFailover,
      };
      const decision = decide(view, options.decideConfig, now);
      if (decision.reason !== lastReason) {
        options.log(decision.reason);
        journal('decision', { reason: decision.reason, actions: decision.actions.map((a) => a.type) });
        lastReason = decision.reason;
      }
      let failed = false;
      for (const action of decision.actions) {
        if (failed && action.type !== 'alert') continue;
        try {
          const ok = await act(action, node, Date.now());
          if (!ok) {
            failed = true;
            options.log(`${action.type} did not take (compare-and-set lost)`);
            journal('action', { action: action.type, result: 'lost' });
          } else if (action.type !== 'renewLease' && action.type !== 'alert') {
            journal('action', { action: action.type, result: 'done', ...('node' in action ? { target: action.node } : {}) });
          }
        } catch (error) {
          failed = true;
          options.log(`${action.type} failed: ${(error as Error).message}`);
          journal('action', { action: action.type, result: 'failed', error: (error as Error).message });
        }
      }
      const record = lastKnownLease as LeaseRecord | null;
      primarySeen = record && !record.released && record.expiresAtMs > Date.now() ? record.holder : null;
      const after = await observe();
      // maintenanceRevision: what `parley maintenance start` waits for; decide() ignores it.
      const settled = settleSynchronous(syncSettling, after, options.decideConfig, (name) => replicaFlushed.get(name) ?? null);
      const publishedSync = JSON.stringify(settled.published);
      if (settled.settling !== null && publishedSync !== lastPublishedSync) {
        journal('synchronous', { setting: settled.settling.config, sinceLsn: settled.settling.sinceLsn, settled: settled.settling.settled, published: settled.published });
      }
      lastPublishedSync = publishedSync;
      syncSettling = settled.settling;
      const published = { ...memberStateOf(after, primarySeen, Date.now(), settled.published), maintenanceRevision: (maintenanceSeen as { revision: string } | null)?.revision ?? null };
      await options.store
        .put(`${leaseKeys.memberPrefix}${options.name}`, JSON.stringify(published), {
          ttlMs: Math.max(10 * options.decideConfig.loopIntervalMs, 5000),
        })
        .catch(() => undefined);
    } catch (error) {
      options.log(`tick failed: ${(error as Error).message}`);
    }
    await sleep(Math.max(0, options.decideConfig.loopIntervalMs - (Date.now() - tickStart)), options.signal);
  }
  // A clean stop (parley down) takes the node's PostgreSQL with it; the lease record is kept, so
  // the next start knows who held it last.
  await stopPostgres('fast').catch((error: unknown) => options.log(`stopping PostgreSQL failed: ${(error as Error).message}`));
  journal('agent', { event: 'stopped' });
}
