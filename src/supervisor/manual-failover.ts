// `parley failover --to NODE [--force]`: for when no healthy primary exists and automatic failover
// will not act (no provable candidate, a lag bound, maintenance on with the primary gone). This file
// refuses when a healthy primary exists, writes the request and waits for the target's answer; the
// target's agent decides (decide() → decideManualFailover): it takes over only with the takeover
// proof, or with --force regardless, journaling what may have been lost.
import { loadConfig } from '../config/config.ts';
import { ParleyError } from '../errors/errors.ts';
import { leaseKeys, type StoredManualFailover } from '../failover/failover.ts';
import { readStatus } from './control.ts';
import { journalOperator, openLeaseStore, operatorName, requireReason } from './operator.ts';

// How long the target's agent has to answer.
const requestTtlMs = 30_000;
const pollMs = 100;

/** Runs a manual failover; returns the target's account of it, or throws a one-line reason. */
export async function runManualFailover(options: { dir: string; to: string; force: boolean; reason: string; configFile?: string; out: (line: string) => void }): Promise<{ detail: string }> {
  const reason = requireReason(options.reason, 'node1 lost its disk');
  const config = loadConfig({ file: options.configFile, env: process.env });
  const status = await readStatus({ dir: options.dir });
  const primary = status.nodes.find((n) => n.name === status.primary && n.role === 'primary' && n.state === 'running');
  if (primary && status.lease?.holder === primary.name && status.lease.active) {
    throw new ParleyError('conflict', `failover refused: ${primary.name} is a healthy primary holding the lease; use parley switchover --to ${options.to}`);
  }
  const target = status.nodes.find((n) => n.name === options.to);
  if (!target) throw new ParleyError('conflict', `failover refused: there is no node "${options.to}" (nodes: ${status.nodes.map((n) => n.name).join(', ')})`);
  if (target.state !== 'running' || target.role !== 'standby') {
    throw new ParleyError('conflict', `failover refused: ${options.to} is ${target.role} (${target.state}); it must be a running standby`);
  }
  const store = openLeaseStore(options.dir);
  const by = operatorName();
  try {
    const now = Date.now();
    const request: StoredManualFailover = { to: options.to, force: options.force, reason, requestedBy: by, requestedAtMs: now, expiresAtMs: now + requestTtlMs };
    const existing = await store.get(leaseKeys.failover);
    const written = existing
      ? await store.update(leaseKeys.failover, JSON.stringify(request), existing.revision)
      : await store.create(leaseKeys.failover, JSON.stringify(request));
    if (!written) throw new ParleyError('conflict', 'another failover request was written at the same moment; try again');
    journalOperator(options.dir, { action: 'failover', to: options.to, force: options.force, by, reason });
    options.out(`failover to ${options.to}${options.force ? ' (forced)' : ''} requested; waiting for its answer`);
    const deadline = now + requestTtlMs + config.cluster.failoverDeadlineMs;
    let accepted: string | undefined;
    while (Date.now() < deadline) {
      if (accepted === undefined) {
        const entry = await store.get(leaseKeys.failover).catch(() => undefined);
        const current = entry ? (JSON.parse(entry.value) as StoredManualFailover) : undefined;
        if (current?.requestedAtMs !== now) throw new ParleyError('conflict', 'the failover request was replaced by another one');
        if (current.answer?.outcome === 'refused') {
          throw new ParleyError('conflict', `failover to ${options.to} refused: ${current.answer.detail}${options.force ? '' : '; --force promotes it anyway, and acknowledged writes may be lost'}`);
        }
        if (current.answer?.outcome === 'accepted') accepted = current.answer.detail;
        else if (current.expiresAtMs <= Date.now()) throw new ParleyError('storage_unavailable', `${options.to} did not answer within ${requestTtlMs / 1000} s (is its agent running? see parley status)`);
      } else {
        const after = await readStatus({ dir: options.dir });
        if (after.primary === options.to && after.lease?.holder === options.to && after.lease.active) return { detail: accepted };
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
    throw new ParleyError('storage_unavailable', `${options.to} accepted but is not a running primary after ${config.cluster.failoverDeadlineMs / 1000} s; see parley status`);
  } finally {
    await store.close();
  }
}
