// `parley maintenance start | stop | run`: the operator's switch that stops automatic failover
// (DESIGN.md invariant 6). The state is one record in the lease store (`maintenance`), written with
// compare-and-set; every agent reads it each tick, journals it and publishes the revision it has
// seen, which is how `start` and `stop` know that every live agent acknowledged. The record carries
// its own expiry, so maintenance ends by itself even if nobody runs `stop`. This file decides
// nothing about failover: decide() reads the record (failover/decide.ts).
import { spawn } from 'node:child_process';
import { loadConfig, type Config } from '../config/config.ts';
import { ParleyError } from '../errors/errors.ts';
import { leaseKeys, type LeaseStore } from '../failover/failover.ts';
import { readStatus, requireRunning } from './control.ts';
import { journalOperator, openLeaseStore, operatorName, requireReason } from './operator.ts';
import { runSwitchover } from './switchover.ts';
import { isAlive, statePaths } from './state.ts';

/** The value stored under `maintenance` (decide() reads active, expiresAtMs, reason, owner). */
export interface StoredMaintenance {
  active: boolean;
  reason: string;
  owner: string;
  startedAtMs: number;
  expiresAtMs: number;
  /** One standby only (`--node`); absent or null: the whole cluster. */
  node?: string | null;
  /** Set by `stop`. */
  endedAtMs?: number;
  endReason?: string;
  endedBy?: string;
}

// How often `start`/`stop`/`run` look at the agents' acknowledgements and the cluster's health.
const pollMs = 200;
// After the switchover of --switchover-to: how long the other standbys have to stream from the new primary.
const syncWaitMs = 30_000;

/** "90s", "15m", "1h", "1h30m", "500ms" → milliseconds; throws a one-line usage error otherwise. */
export function parseDuration(text: string): number {
  const parts = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(text.trim());
  if (!parts || text.trim() === '' || parts.slice(1).every((p) => p === undefined)) {
    throw new ParleyError('cli_usage', `--ttl: "${text}" is not a duration; write it like 90s, 15m, 1h or 1h30m`);
  }
  const [h, m, s, ms] = parts.slice(1).map((p) => Number(p ?? 0));
  return h! * 3_600_000 + m! * 60_000 + s! * 1000 + ms!;
}

async function readRecord(store: LeaseStore): Promise<{ revision: string; value: StoredMaintenance } | undefined> {
  const entry = await store.get(leaseKeys.maintenance);
  return entry ? { revision: entry.revision, value: JSON.parse(entry.value) as StoredMaintenance } : undefined;
}

/** Writes the record with compare-and-set on what was read; one retry if someone wrote in between. */
async function writeRecord(store: LeaseStore, make: (current: StoredMaintenance | undefined) => StoredMaintenance): Promise<string> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const current = await readRecord(store);
    const value = JSON.stringify(make(current?.value));
    const written = current ? await store.update(leaseKeys.maintenance, value, current.revision) : await store.create(leaseKeys.maintenance, value);
    if (written) return written.revision;
  }
  throw new ParleyError('conflict', 'the maintenance record changed twice while being written; someone else is changing it, try again');
}

/**
 * Waits until every node whose agent runs has published `revision` as seen. Names the ones that
 * did not within the bound.
 */
async function waitForAcknowledgements(dir: string, store: LeaseStore, revision: string, timeoutMs: number): Promise<string[]> {
  const { state } = requireRunning(dir);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const live = state.nodes.filter((node) => isAlive(node.agentPid ?? null)).map((node) => node.name);
    const published = new Map(
      (await store.list(leaseKeys.memberPrefix)).map((entry) => {
        const member = JSON.parse(entry.value) as { name: string; maintenanceRevision?: string | null };
        return [member.name, member.maintenanceRevision ?? null] as const;
      }),
    );
    const missing = live.filter((name) => published.get(name) !== revision);
    if (missing.length === 0) return live;
    if (Date.now() >= deadline) {
      throw new ParleyError(
        'storage_unavailable',
        `maintenance record written, but ${missing.join(', ')} did not acknowledge it within ${timeoutMs / 1000} s (see ${statePaths(dir).dir}/logs/<node>-agent.log)`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/**
 * Waits until the primary publishes a synchronous set with `node` out (`inSet` false) or back in
 * (true). The primary publishes a narrowed set only once the other standbys hold every write
 * acknowledged before it (failover/decide.ts settleSynchronous), so "out" means writes neither
 * wait for `node` nor depend on it. Returns the primary's name.
 */
async function waitForSynchronousSet(store: LeaseStore, node: string, inSet: boolean, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let seen = 'no primary has published its state';
  for (;;) {
    const members = (await store.list(leaseKeys.memberPrefix)).map(
      (entry) => JSON.parse(entry.value) as { name: string; running: boolean; role: string; synchronous: { quorum: number; standbys: string[] } | null },
    );
    const primary = members.find((m) => m.running && m.role === 'primary');
    if (primary !== undefined) {
      const set = primary.synchronous;
      if ((set?.standbys.includes(node) ?? false) === inSet) return primary.name;
      seen = `${primary.name} publishes ${set === null ? 'no synchronous set' : `ANY ${set.quorum} (${set.standbys.join(', ')})`}`;
    }
    if (Date.now() >= deadline) {
      throw new ParleyError('storage_unavailable', `${node} is not ${inSet ? 'back in' : 'out of'} the synchronous set after ${timeoutMs / 1000} s (${seen})`);
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/**
 * Checks for maintenance of one node: it must exist and be a standby (for the primary, switch over
 * first: --switchover-to), and the other standbys must keep the synchronous quorum without it, so
 * that writes never wait for it.
 */
async function checkNodeMaintenance(dir: string, node: string, switchoverTo: string | undefined, configFile: string | undefined, out: (line: string) => void): Promise<void> {
  let status = await readStatus({ dir });
  const target = status.nodes.find((n) => n.name === node);
  if (!target) throw new ParleyError('cli_usage', `--node: there is no node "${node}" (nodes: ${status.nodes.map((n) => n.name).join(', ')})`);
  if (status.primary === node) {
    if (switchoverTo === undefined) {
      throw new ParleyError('conflict', `${node} is the primary: maintenance of the primary needs a switchover first; add --switchover-to NODE`);
    }
    const done = await runSwitchover({ dir, to: switchoverTo, reason: `before maintenance of ${node}`, configFile, out });
    out(`switchover done: ${switchoverTo} is the primary (${done.tookMs} ms)`);
  }
  // Right after a switchover the standbys are still connecting to the new primary: give them time.
  const inSync = (s: typeof status) => s.nodes.filter((n) => n.name !== node && n.name !== s.primary && n.role === 'standby' && (n.sync === 'quorum' || n.sync === 'sync'));
  const deadline = Date.now() + (switchoverTo === undefined ? 0 : syncWaitMs);
  status = await readStatus({ dir });
  while (inSync(status).length < 1 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    status = await readStatus({ dir });
  }
  const others = inSync(status);
  if (others.length < 1) {
    throw new ParleyError('conflict', `maintenance of ${node} refused: no other standby streams in sync, so writes would wait for ${node}`);
  }
}

/** What `parley maintenance start` (and `run`) are given on the command line. */
export interface MaintenanceOptions {
  dir: string;
  reason: string;
  /** "90s", "15m", "1h30m"; default maintenance.defaultTtlMs. */
  ttl?: string;
  /** One standby only; for the primary, with `switchoverTo`. */
  node?: string;
  switchoverTo?: string;
  configFile?: string;
  out?: (line: string) => void;
}

/** `parley maintenance start`: on, acknowledged by every live agent, or an error naming who did not. */
export async function startMaintenance(options: MaintenanceOptions): Promise<{ expiresAt: string; acknowledgedBy: string[]; outOfSynchronousSet?: boolean }> {
  if (options.switchoverTo !== undefined && options.node === undefined) throw new ParleyError('cli_usage', '--switchover-to goes with --node (maintenance of the primary)');
  const config = loadConfig({ file: options.configFile, env: process.env });
  const ttlMs = options.ttl === undefined ? config.maintenance.defaultTtlMs : parseDuration(options.ttl);
  if (ttlMs > config.maintenance.maxTtlMs) {
    throw new ParleyError('cli_usage', `--ttl: ${options.ttl} is longer than maintenance.maxTtlMs (${config.maintenance.maxTtlMs / 60_000} min)`);
  }
  if (ttlMs < 1000) throw new ParleyError('cli_usage', `--ttl: ${options.ttl} is shorter than 1 s`);
  const reason = requireReason(options.reason, 'kernel upgrade on db hosts');
  const owner = operatorName();
  if (options.node !== undefined) await checkNodeMaintenance(options.dir, options.node, options.switchoverTo, options.configFile, options.out ?? (() => undefined));
  const store = openLeaseStore(options.dir);
  try {
    const now = Date.now();
    const value: StoredMaintenance = { active: true, reason, owner, startedAtMs: now, expiresAtMs: now + ttlMs, node: options.node ?? null };
    const revision = await writeRecord(store, () => value);
    journalOperator(options.dir, { action: 'maintenance start', reason, by: owner, ttlMs, node: value.node, expiresAt: new Date(value.expiresAtMs).toISOString() });
    const acknowledgedBy = await waitForAcknowledgements(options.dir, store, revision, config.maintenance.acknowledgeTimeoutMs);
    if (value.node !== null) {
      // Point 4: the standby leaves the synchronous set before its maintenance begins. Should the
      // primary not get there (the others fell behind meanwhile), maintenance is on all the same —
      // the node is left alone and never promoted — and the operator is told.
      try {
        const primary = await waitForSynchronousSet(store, value.node!, false, config.maintenance.acknowledgeTimeoutMs);
        journalOperator(options.dir, { action: 'maintenance start', node: value.node, synchronous: `out of ${primary}'s synchronous set` });
      } catch (error) {
        throw new ParleyError('storage_unavailable', `maintenance of ${value.node} is on, but ${(error as Error).message}; writes may still wait for it`);
      }
      return { expiresAt: new Date(value.expiresAtMs).toISOString(), acknowledgedBy, outOfSynchronousSet: true };
    }
    return { expiresAt: new Date(value.expiresAtMs).toISOString(), acknowledgedBy };
  } finally {
    await store.close();
  }
}

/** `parley maintenance stop`: off, acknowledged by every live agent. */
export async function stopMaintenance(options: { dir: string; reason: string; node?: string; configFile?: string }): Promise<{ wasOn: boolean; acknowledgedBy: string[] }> {
  const config = loadConfig({ file: options.configFile, env: process.env });
  const reason = requireReason(options.reason, 'kernel upgrade on db hosts');
  const by = operatorName();
  const store = openLeaseStore(options.dir);
  try {
    const current = await readRecord(store);
    const wasOn = current !== undefined && current.value.active && current.value.expiresAtMs > Date.now();
    const on = current?.value.node ?? null;
    if (wasOn && options.node !== undefined && on !== options.node) {
      throw new ParleyError('conflict', `the maintenance on is ${on === null ? 'of the whole cluster' : `of ${on}`}, not of ${options.node}; stop it without --node`);
    }
    const revision = await writeRecord(store, (record) => ({
      ...(record ?? { reason, owner: by, startedAtMs: Date.now(), expiresAtMs: Date.now() }),
      active: false,
      endedAtMs: Date.now(),
      endReason: reason,
      endedBy: by,
    }));
    journalOperator(options.dir, { action: 'maintenance stop', reason, by, wasOn });
    const acknowledgedBy = await waitForAcknowledgements(options.dir, store, revision, config.maintenance.acknowledgeTimeoutMs);
    // A standby back from maintenance of its own rejoins the quorum (at once: widening is safe).
    if (wasOn && on !== null) await waitForSynchronousSet(store, on, true, config.maintenance.acknowledgeTimeoutMs);
    return { wasOn, acknowledgedBy };
  } finally {
    await store.close();
  }
}

/**
 * A writable primary holding the lease, and every other node a standby in the synchronous set — the
 * node under maintenance of its own (`resting`) is out of that set by design, so streaming is enough.
 */
async function healthy(dir: string, resting: string | undefined): Promise<string | null> {
  const status = await readStatus({ dir });
  if (status.primary === null || status.lease?.holder !== status.primary || !status.lease.active) return 'no primary holds the lease';
  const inSync = (n: (typeof status.nodes)[number]) => n.sync === 'quorum' || n.sync === 'sync' || (n.name === resting && n.sync === 'async');
  const behind = status.nodes.filter((n) => n.name !== status.primary && (n.role !== 'standby' || !inSync(n)));
  return behind.length === 0 ? null : `${behind.map((n) => `${n.name} (${n.role}, ${n.sync ?? n.state})`).join(', ')} not streaming in sync`;
}

/**
 * `parley maintenance run -- COMMAND...`: maintenance on, COMMAND, then off once the cluster is
 * healthy again. When COMMAND fails or the cluster does not recover in time, maintenance stays on
 * (until its ttl) and the error says so.
 */
export async function runMaintenance(options: MaintenanceOptions & { command: string[]; out: (line: string) => void }): Promise<void> {
  if (options.command.length === 0) throw new ParleyError('cli_usage', 'maintenance run needs a command after --, e.g. parley maintenance run --reason "restart node2" -- ./restart.sh');
  const config: Config = loadConfig({ file: options.configFile, env: process.env });
  const started = await startMaintenance(options);
  options.out(`maintenance on until ${started.expiresAt} (acknowledged by ${started.acknowledgedBy.join(', ')}); running: ${options.command.join(' ')}`);
  journalOperator(options.dir, { action: 'maintenance run', command: options.command, by: operatorName(), reason: options.reason });
  const code = await new Promise<number | string>((resolve) => {
    const child = spawn(options.command[0]!, options.command.slice(1), { stdio: 'inherit' });
    child.once('error', (error) => resolve(error.message));
    child.once('exit', (exitCode, signal) => resolve(signal ?? exitCode ?? 1));
  });
  if (code !== 0) {
    journalOperator(options.dir, { action: 'maintenance run', result: 'command failed', exit: code });
    throw new ParleyError('internal', `${options.command.join(' ')} failed (${typeof code === 'number' ? `exit ${code}` : code}); maintenance stays on until ${started.expiresAt} — check the cluster, then parley maintenance stop --reason ...`);
  }
  const deadline = Date.now() + config.maintenance.recoverTimeoutMs;
  let why = await healthy(options.dir, options.node);
  while (why !== null && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    why = await healthy(options.dir, options.node);
  }
  if (why !== null) {
    journalOperator(options.dir, { action: 'maintenance run', result: 'not healthy', why });
    throw new ParleyError('storage_unavailable', `the command succeeded but the cluster is not healthy after ${config.maintenance.recoverTimeoutMs / 1000} s (${why}); maintenance stays on until ${started.expiresAt}`);
  }
  await stopMaintenance({ dir: options.dir, reason: `maintenance run of "${options.command.join(' ')}" done`, configFile: options.configFile });
  options.out('command done and the cluster healthy; maintenance off');
}
