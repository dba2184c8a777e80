// `parley switchover --to NODE`: a planned handover of the primary role. This file checks that
// it can be done without losing anything or stopping writes for long, writes the request to the
// lease store and waits for its outcome; the primary's agent carries it out (decide() →
// 'handOver', failover/agent.ts) and either hands the lease over or restarts as the primary.
import { readFileSync } from 'node:fs';
import { loadConfig } from '../config/config.ts';
import { ParleyError } from '../errors/errors.ts';
import { leaseKeys, type StoredSwitchover } from '../failover/failover.ts';
import { readStatus } from './control.ts';
import { journalOperator, openLeaseStore, operatorName, requireReason } from './operator.ts';
import { statePaths } from './state.ts';
import type { ClusterStatus } from './status-core.ts';

// How long the primary's agent has to start the handover before the request lapses.
const requestTtlMs = 30_000;
const pollMs = 100;

/** The first pre-check that fails, as "check: why", or null when the switchover may go ahead. */
export function switchoverRefusal(status: ClusterStatus, to: string, limits: { maximumLagBytes: number; quorum: number }): string | null {
  const primary = status.nodes.find((n) => n.name === status.primary);
  if (!primary || status.lease?.holder !== primary.name || !status.lease.active) {
    return `a healthy primary: ${status.primary === null ? 'no node answers as primary' : `${status.primary} does not hold the lease`}`;
  }
  const target = status.nodes.find((n) => n.name === to);
  if (!target) return `the target: there is no node "${to}" (nodes: ${status.nodes.map((n) => n.name).join(', ')})`;
  if (target.name === primary.name) return `the target: ${to} is the primary already`;
  if (target.role !== 'standby' || target.state !== 'running') return `the target healthy: ${to} is ${target.role} (${target.state})`;
  if (target.sync !== 'quorum' && target.sync !== 'sync') return `the target streaming: ${to} is ${target.sync ?? 'not streaming'}, not a synchronous standby of ${primary.name}`;
  if ((target.lagBytes ?? Number.POSITIVE_INFINITY) > limits.maximumLagBytes) {
    return `lag under the limit: ${to} is ${target.lagBytes ?? 'an unknown number of'} bytes behind (cluster.maximumLagOnFailoverBytes ${limits.maximumLagBytes})`;
  }
  if (status.maintenance !== null) return `no maintenance in the way: maintenance is on (${status.maintenance.reason}, by ${status.maintenance.owner}); stop it first`;
  const others = status.nodes.filter((n) => n.name !== primary.name && n.name !== to && n.role === 'standby' && (n.sync === 'quorum' || n.sync === 'sync'));
  if (others.length < limits.quorum) {
    return `the synchronous quorum without ${primary.name}: ${to} would need ${limits.quorum} other streaming standby(s) and has ${others.length}; writes would stop until ${primary.name} follows it`;
  }
  return null;
}

/** `parley switchover`: pre-checks, the request, and its outcome; throws a one-line reason on refusal or rollback. */
export async function runSwitchover(options: { dir: string; to: string; reason: string; configFile?: string; out: (line: string) => void }): Promise<{ tookMs: number }> {
  const reason = requireReason(options.reason, 'move the primary off db1 for a kernel upgrade');
  const config = loadConfig({ file: options.configFile, env: process.env });
  const status = await readStatus({ dir: options.dir });
  const refusal = switchoverRefusal(status, options.to, { maximumLagBytes: config.cluster.maximumLagOnFailoverBytes, quorum: config.cluster.nodes > 1 ? 1 : 0 });
  if (refusal !== null) throw new ParleyError('conflict', `switchover refused; failed check: ${refusal}`);
  const from = status.primary!;
  const paths = statePaths(options.dir);
  const store = openLeaseStore(options.dir);
  const by = operatorName();
  try {
    const now = Date.now();
    const request: StoredSwitchover = { from, to: options.to, reason, requestedBy: by, requestedAtMs: now, expiresAtMs: now + requestTtlMs };
    const existing = await store.get(leaseKeys.switchover);
    if (existing) {
      const pending = JSON.parse(existing.value) as StoredSwitchover;
      if (pending.result === undefined && pending.expiresAtMs > now) {
        throw new ParleyError('conflict', `switchover refused; failed check: no other switchover under way (${pending.requestedBy} asked for ${pending.to} at ${new Date(pending.requestedAtMs).toISOString()})`);
      }
    }
    const written = existing
      ? await store.update(leaseKeys.switchover, JSON.stringify(request), existing.revision)
      : await store.create(leaseKeys.switchover, JSON.stringify(request));
    if (!written) throw new ParleyError('conflict', 'another switchover request was written at the same moment; try again');
    journalOperator(options.dir, { action: 'switchover', from, to: options.to, by, reason });
    options.out(`switchover from ${from} to ${options.to} requested; ${from} hands over once ${options.to} has every byte`);

    // The outcome: the request's result, then the target holding the lease as a running primary.
    const deadline = now + requestTtlMs + config.cluster.failoverDeadlineMs;
    let outcome: StoredSwitchover['result'];
    while (Date.now() < deadline) {
      const entry = await store.get(leaseKeys.switchover).catch(() => undefined);
      const current = entry ? (JSON.parse(entry.value) as StoredSwitchover) : undefined;
      if (current?.requestedAtMs !== now) throw new ParleyError('conflict', 'the switchover request was replaced by another one');
      outcome = current.result;
      if (outcome?.outcome === 'rolled back') {
        throw new ParleyError('storage_unavailable', `switchover to ${options.to} rolled back: ${outcome.detail}; ${from} is still the primary`);
      }
      if (outcome?.outcome === 'handed over') {
        const after = await readStatus({ dir: options.dir });
        if (after.primary === options.to && after.lease?.holder === options.to && after.lease.active) return { tookMs: Date.now() - now };
      } else if (current.expiresAtMs <= Date.now()) {
        throw new ParleyError('storage_unavailable', `${from} did not start the handover within ${requestTtlMs / 1000} s: ${lastReason(paths.journalFile, from)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
    throw new ParleyError('storage_unavailable', `${options.to} holds the lease but is not a running primary after ${config.cluster.failoverDeadlineMs / 1000} s; its agent rolls the promotion back by itself (see parley status)`);
  } finally {
    await store.close();
  }
}

/** The last reason `node`'s agent journaled, to say why it did not hand over. */
function lastReason(file: string, node: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n').reverse();
    for (const line of lines) {
      const entry = JSON.parse(line) as { node?: string; kind?: string; reason?: string };
      if (entry.node === node && entry.kind === 'decision' && entry.reason) return entry.reason;
    }
  } catch {
    // no journal: say nothing more
  }
  return 'see its agent log';
}
