// The failover decision core: what one agent does on one loop tick, given what it observed.
// Pure: no I/O, no clock, no randomness, so the simulator can run it for millions of ticks and a
// journal can replay it. The rules are in docs/failover-core.md; the one-line reasons follow
// Patroni's ("no action: I am node2, following node1").
import type {
  ManualFailoverRequest,
  Action,
  DecideConfig,
  Decision,
  FailoverAlertCode,
  LeaseRecord,
  MaintenanceRecord,
  MemberState,
  NodeObservation,
  SynchronousConfig,
  View,
  Wal,
} from './types.ts';
import { canStreamFrom, commonPosition, containsWal, formatBytes, formatLsn } from './wal.ts';

/**
 * How long before its lease ends a primary that cannot renew stops taking writes: the next tick can
 * come one loop interval later, and the demotion itself is given one more.
 */
export function safetyMarginMs(config: DecideConfig): number {
  return 2 * config.loopIntervalMs;
}

/** How recently a member must have published to be counted as a live candidate. */
export function candidateFreshnessMs(config: DecideConfig): number {
  return 2 * config.loopIntervalMs;
}

/** How long a candidate whose promotion was rolled back stands aside so that another can try. */
export function rollbackCooldownMs(config: DecideConfig): number {
  return config.leaseTtlMs;
}

/** The synchronous setting a primary named `name` should run with: ANY k of every other member. */
export function desiredSynchronous(config: DecideConfig, name: string): SynchronousConfig | null {
  const standbys = config.members.filter((member) => member !== name);
  if (standbys.length === 0 || config.synchronousQuorum === 0) return null;
  return { quorum: Math.min(config.synchronousQuorum, standbys.length), standbys };
}

/**
 * The synchronous setting the primary `me` runs with while `resting` (a standby under maintenance of
 * its own) is out: ANY k of the others without it — only while k of those stream from `me`, so that
 * taking it out never blocks writes; otherwise the full set, `resting` included.
 */
export function synchronousWithout(config: DecideConfig, me: string, resting: string | null, members: readonly MemberState[], now: number): SynchronousConfig | null {
  const full = desiredSynchronous(config, me);
  if (resting === null || full === null || resting === me || !full.standbys.includes(resting)) return full;
  const standbys = full.standbys.filter((name) => name !== resting);
  const fresh = now - candidateFreshnessMs(config);
  const streaming = members.filter((m) => standbys.includes(m.name) && m.publishedAtMs >= fresh && m.running && m.role === 'standby' && m.upstream === me && m.streaming);
  return streaming.length >= full.quorum ? { quorum: full.quorum, standbys } : full;
}

/**
 * What a primary's agent remembers of a narrowing of its synchronous set (see settleSynchronous):
 * the setting it saw, the primary's flush position when it first saw it, and whether k of that
 * setting's standbys have flushed past that position since.
 */
export interface SynchronousSettling {
  readonly config: SynchronousConfig;
  readonly sinceLsn: number;
  readonly settled: boolean;
}

/**
 * The synchronous setting a primary publishes, which takeovers are proven against (takeoverEvidence).
 * Writes acknowledged under a wider setting (ANY k of all others) may be on the standby a narrowing
 * took out and nowhere else, so a narrower setting is published only once k of its standbys have
 * flushed past the primary's flush position at the time the narrowing took effect — every write
 * acknowledged before it lies below. Until then the primary publishes the full set. An agent that
 * restarts remembers nothing and so settles again: the conservative answer. Pure; `flushedOf`
 * gives each standby's flush position as the primary sees it (pg_stat_replication), null when it
 * does not stream. Simulation seed 91390 lost writes without this.
 */
export function settleSynchronous(
  previous: SynchronousSettling | null,
  node: NodeObservation,
  config: DecideConfig,
  flushedOf: (name: string) => number | null,
): { readonly settling: SynchronousSettling | null; readonly published: SynchronousConfig | null } {
  const actual = node.synchronous;
  // The common case first, without building the full set: every other member, the configured k.
  const everyOther = actual !== null && actual.standbys.length === config.members.length - 1 && !actual.standbys.includes(node.name);
  if (!node.running || node.role !== 'primary' || actual === null || (everyOther && actual.quorum <= config.synchronousQuorum)) return { settling: null, published: actual };
  const full = desiredSynchronous(config, node.name);
  if (full === null || covers(actual, full)) return { settling: null, published: actual };
  let settling = previous !== null && sameSynchronous(previous.config, actual) ? previous : { config: actual, sinceLsn: node.flushedLsn, settled: false };
  if (!settling.settled) {
    const past = actual.standbys.filter((name) => (flushedOf(name) ?? -1) >= settling.sinceLsn).length;
    if (past >= actual.quorum) settling = { ...settling, settled: true };
  }
  if (settling.settled) return { settling, published: actual };
  const standbys = [...full.standbys, ...actual.standbys.filter((name) => !full.standbys.includes(name))];
  return { settling, published: { quorum: Math.min(full.quorum, actual.quorum), standbys } };
}

/** Whether proofs against `a` hold every write acknowledged under `b`: a has b's standbys, k no larger. */
function covers(a: SynchronousConfig, b: SynchronousConfig): boolean {
  return a.quorum <= b.quorum && b.standbys.every((name) => a.standbys.includes(name));
}

/** Whether a lease term is still running at `now` (not released, not expired). */
export function termActive(record: LeaseRecord, now: number): boolean {
  return !record.released && record.expiresAtMs > now;
}

/** Whether maintenance of the whole cluster is on at `now`. */
export function maintenanceActive(record: MaintenanceRecord | null, now: number): boolean {
  return record !== null && record.active && record.expiresAtMs > now && (record.node ?? null) === null;
}

/** The node under maintenance of its own at `now`, or null. */
export function nodeInMaintenance(record: MaintenanceRecord | null, now: number): string | null {
  return record !== null && record.active && record.expiresAtMs > now ? (record.node ?? null) : null;
}

// Actions a standby under maintenance of its own does not take: it is left alone and never a candidate.
const restingForbids = new Set<Action['type']>(['start', 'rewind', 'detach', 'acquireLease', 'promote', 'handOver']);

/** The state an agent publishes after acting: its fresh observation, stamped, with whom it follows. */
export function memberStateOf(
  node: NodeObservation,
  primarySeen: string | null,
  publishedAtMs: number,
  /** What settleSynchronous says to publish; the setting in force when omitted. */
  synchronous: SynchronousConfig | null = node.synchronous,
): MemberState {
  return {
    name: node.name,
    publishedAtMs,
    running: node.running,
    role: node.role,
    timeline: node.timeline,
    history: node.history,
    flushedLsn: node.flushedLsn,
    upstream: node.upstream,
    streaming: node.streaming,
    synchronous,
    primarySeen,
  };
}

/**
 * A standby's answer when `asker` asks "am I still your primary?" while it cannot reach the lease
 * store (Patroni's failsafe). Yes only if this node streams from `asker` and will not help replace
 * it: it cannot read the lease either, or the lease is still `asker`'s, or maintenance holds every
 * failover. A standby that sees `asker`'s term ended says no, and detaches on its own next tick.
 */
export function confirmsPrimary(view: View, now: number, asker: string): boolean {
  const node = view.node;
  if (!node.running || node.role !== 'standby' || node.upstream !== asker) return false;
  if (!view.lease.known) return true;
  const record = view.lease.record;
  if (record === null || record.holder !== asker) return false;
  if (termActive(record, now)) return true;
  return !record.released && maintenanceActive(view.maintenance, now);
}

/** Decides what this agent does now. See docs/failover-core.md for the rules. */
export function decide(view: View, config: DecideConfig, now: number): Decision {
  checkInputs(view, config, now);
  const made = decideByLease(view, config, now);
  const me = view.node.name;
  if (nodeInMaintenance(view.maintenance, now) !== me || (view.node.running && view.node.role === 'primary')) return made;
  if (!made.actions.some((action) => restingForbids.has(action.type))) return made;
  const m = view.maintenance!;
  return decision(
    made.actions.filter((action) => action.type === 'alert'),
    `no action: I am ${me}, under maintenance of my own (${m.reason}, by ${m.owner}); I would otherwise be ${made.reason.replace(/^no action: /, '')}`,
  );
}

function decideByLease(view: View, config: DecideConfig, now: number): Decision {
  const lease = view.lease;
  if (!lease.known) return decideWithoutStore(view, config, now, lease.lastKnown);
  const record = lease.record;
  if (record !== null && termActive(record, now)) {
    return record.holder === view.node.name ? decideAsHolder(view, config, now, record) : decideUnderHolder(view, now, record);
  }
  return decideWithoutHolder(view, config, now, record);
}

// ---------------------------------------------------------------------------------------------
// This node holds a running term.

function decideAsHolder(view: View, config: DecideConfig, now: number, record: LeaseRecord): Decision {
  const node = view.node;
  const me = node.name;
  const remaining = `${record.expiresAtMs - now} ms`;
  if (node.role === 'primary') {
    const renew: Action = { type: 'renewLease', revision: record.revision, ttlMs: config.leaseTtlMs };
    if (!node.running) {
      const manual = pendingManualFailover(view, now);
      if (manual !== null && manual.to !== me) {
        return decision(
          [{ type: 'releaseLease', revision: record.revision, rollback: false }],
          `releasing the lease: my PostgreSQL is down and an operator asked for a failover to ${manual.to}`,
        );
      }
      if (maintenanceActive(view.maintenance, now)) {
        return decision([renew], `no action: I am ${me}, the primary, holding the lease; my PostgreSQL is down and left alone during maintenance${maintenanceNote(view, now)}`);
      }
      const downMs = node.downSinceMs === null ? 0 : now - node.downSinceMs;
      if (downMs >= config.primaryStartTimeoutMs) {
        const message = `${me}'s PostgreSQL has not come back in ${downMs} ms; released the lease so a standby can take over`;
        return decision(
          [{ type: 'releaseLease', revision: record.revision, rollback: false }, alert('primary-start-failed', 'critical', message)],
          `releasing the lease: I am ${me}, the primary, and my PostgreSQL has been down ${downMs} ms (primaryStartTimeoutMs ${config.primaryStartTimeoutMs})`,
        );
      }
      return decision([renew, { type: 'start', role: 'primary' }], `starting PostgreSQL as primary: I am ${me} and hold the lease; down for ${downMs} ms`);
    }
    const actions: Action[] = [renew];
    const desired = synchronousWithout(config, me, nodeInMaintenance(view.maintenance, now), view.members, now);
    if (!sameSynchronous(node.synchronous, desired)) actions.push({ type: 'setSynchronousStandbyNames', config: desired });
    const handover = decideHandover(view, config, now, record);
    if (handover !== null) return handover;
    const rivals = view.members.filter(
      (m) => m.running && m.role === 'primary' && m.publishedAtMs >= now - candidateFreshnessMs(config),
    );
    if (rivals.length > 0) {
      const names = rivals.map((m) => m.name).join(', ');
      actions.push(alert('other-primary', 'critical', `${names} published itself as primary while ${me} holds the lease`));
    }
    return decision(actions, `no action: I am ${me}, the primary, holding the lease${maintenanceNote(view, now)}`);
  }

  // A standby holding the lease: a failover (or a demoted primary taking back) is under way.
  const elapsedMs = now - record.acquiredAtMs;
  const deadlineAtMs = record.acquiredAtMs + config.failoverDeadlineMs;
  if (now + safetyMarginMs(config) >= deadlineAtMs) {
    const message = `${me} could not promote within ${config.failoverDeadlineMs} ms; released the lease so another node can take it`;
    return decision(
      [
        { type: 'demote' },
        { type: 'releaseLease', revision: record.revision, rollback: true },
        alert('failover-rolled-back', 'critical', message),
      ],
      `rolling back: I took the lease ${elapsedMs} ms ago and am still not primary; the deadline is ${config.failoverDeadlineMs} ms`,
    );
  }
  // Renewing never carries the term past the deadline, so a candidate that freezes still lets go in time.
  const renew: Action = { type: 'renewLease', revision: record.revision, ttlMs: Math.min(config.leaseTtlMs, deadlineAtMs - now) };
  if (!node.running) {
    return decision([renew, { type: 'start', role: 'standby' }], `starting PostgreSQL to promote it: I am ${me} and took the lease ${elapsedMs} ms ago`);
  }
  return decision(
    [renew, { type: 'promote' }],
    `promoting: I am ${me} and took the lease ${elapsedMs} ms ago; ${deadlineAtMs - now} ms left before rollback (lease ends in ${remaining})`,
  );
}

/**
 * A running primary with the lease and a switchover request naming it: hand over when the target
 * streams from it, in sync, and maintenance is off; otherwise say why and wait (the request expires).
 */
function decideHandover(view: View, config: DecideConfig, now: number, record: LeaseRecord): Decision | null {
  const request = view.switchover;
  const me = view.node.name;
  if (request === null || request.from !== me || request.to === me || now >= request.expiresAtMs) return null;
  if (maintenanceActive(view.maintenance, now)) return null;
  if (nodeInMaintenance(view.maintenance, now) === request.to) {
    return decision([{ type: 'renewLease', revision: record.revision, ttlMs: config.leaseTtlMs }], `no action: a switchover to ${request.to} is requested, but ${request.to} is under maintenance; waiting`);
  }
  const target = findMember(view, request.to);
  const fresh = target !== undefined && target.publishedAtMs >= now - candidateFreshnessMs(config) - config.loopIntervalMs;
  const synchronous = view.node.synchronous?.standbys.includes(request.to) ?? false;
  if (!fresh || !target!.running || target!.role !== 'standby' || target!.upstream !== me || !target!.streaming || !synchronous) {
    const state = target === undefined ? 'has not published its state' : !fresh ? 'has not published lately' : `is ${target.running ? target.role : 'down'}${target.upstream === me && target.streaming ? ', streaming from me' : ', not streaming from me'}${synchronous ? '' : ', not in the synchronous set'}`;
    return decision([{ type: 'renewLease', revision: record.revision, ttlMs: config.leaseTtlMs }], `no action: a switchover to ${request.to} is requested, but ${request.to} ${state}; waiting`);
  }
  return decision(
    [{ type: 'handOver', to: request.to, revision: record.revision, switchoverRevision: request.revision }],
    `handing over to ${request.to}: switchover requested; I stop taking writes, ${request.to} takes the lease once it has every byte`,
  );
}

// ---------------------------------------------------------------------------------------------
// Another node holds a running term.

function decideUnderHolder(view: View, now: number, record: LeaseRecord): Decision {
  const node = view.node;
  const me = node.name;
  const holder = record.holder;
  if (node.role === 'primary' && node.running) {
    return decision(
      [{ type: 'demote' }, alert('foreign-lease', 'critical', `${me} was taking writes while ${holder} holds the lease; demoted`)],
      `demoting: ${holder} holds the lease (${record.expiresAtMs - now} ms left); I am ${me} and must not take writes`,
    );
  }
  if (!node.running) {
    if (maintenanceActive(view.maintenance, now)) {
      return decision([], `no action: I am ${me}; my PostgreSQL is down and left alone during maintenance${maintenanceNote(view, now)}`);
    }
    return decision([{ type: 'start', role: 'standby' }], `starting PostgreSQL as a standby: ${holder} holds the lease`);
  }
  const holderState = findMember(view, holder);
  const manual = pendingManualFailover(view, now);
  if (manual !== null && manual.to === me && holder !== me && holderState?.running === true && holderState.role === 'primary') {
    return decision(
      [{ type: 'answerFailover', revision: manual.revision, outcome: 'refused', detail: `${holder} is a running primary holding the lease; use parley switchover` }],
      `refusing the manual failover: ${holder} is a running primary holding the lease`,
    );
  }
  if (holderState === undefined || !holderState.running || holderState.role !== 'primary') {
    if (node.upstream !== null && node.upstream !== holder) {
      return decision(
        [{ type: 'detach', from: node.upstream }],
        `detaching from ${node.upstream}: ${holder} holds the lease and is promoting`,
      );
    }
    return decision([], `no action: I am ${me}; ${holder} holds the lease and is not primary yet${maintenanceNote(view, now)}`);
  }
  const compatible = canStreamFrom(node, holderState);
  if (!compatible && maintenanceActive(view.maintenance, now)) {
    return decision([], `no action: I am ${me}; my WAL is not on ${holder}'s timeline, and the rewind waits for the end of maintenance${maintenanceNote(view, now)}`);
  }
  if (!compatible) {
    return decision(
      [{ type: 'rewind', node: holder }],
      `rewinding from ${holder}: my WAL (timeline ${node.timeline}, ${formatLsn(node.flushedLsn)}) is not on its timeline ${holderState.timeline}`,
    );
  }
  if (node.upstream !== holder) {
    return decision([{ type: 'follow', node: holder }], `following ${holder}: it holds the lease${node.upstream === null ? '' : ` (was following ${node.upstream})`}`);
  }
  if (!node.streaming) return decision([], `no action: I am ${me}, connecting to ${holder}${maintenanceNote(view, now)}`);
  return decision([], `no action: I am ${me}, following ${holder}${maintenanceNote(view, now)}`);
}

// ---------------------------------------------------------------------------------------------
// Nobody holds a running term: it expired, was released, or there never was one.

function decideWithoutHolder(view: View, config: DecideConfig, now: number, record: LeaseRecord | null): Decision {
  const node = view.node;
  const me = node.name;
  const last = record?.holder ?? null;
  const acquire: Action = {
    type: 'acquireLease',
    revision: record?.revision ?? null,
    maintenanceRevision: view.maintenance?.revision ?? null,
    ttlMs: config.leaseTtlMs,
  };
  // The last holder that did not give the lease up has every write of its term: nobody took the
  // lease since, so nobody else can have written.
  const myTermUnbroken = record === null || (last === me && !record.released);

  if (node.role === 'primary' && node.running) {
    if (record === null) return decision([acquire], `acquiring the lease: there is none and I am ${me}, the primary`);
    if (myTermUnbroken) {
      return decision([acquire], `acquiring the lease again: my term ended ${now - record.expiresAtMs} ms ago and nobody took it; I am ${me}, still the primary`);
    }
    return decision(
      [{ type: 'demote' }, alert('lease-lost', 'critical', `${me} was a primary without the lease (last held by ${last}); demoted`)],
      `demoting: the lease was last held by ${last}; I am ${me} and must not take writes without it`,
    );
  }
  if (!node.running) {
    const leftAlone = maintenanceActive(view.maintenance, now);
    if (node.role === 'primary' && myTermUnbroken) {
      if (leftAlone) return decision([acquire], `acquiring the lease again: I am ${me}, the last holder; my PostgreSQL is down and left alone during maintenance${maintenanceNote(view, now)}`);
      return decision([acquire, { type: 'start', role: 'primary' }], `starting PostgreSQL as primary: I am ${me}, the last holder, and nobody took the lease since`);
    }
    if (leftAlone) return decision([], `no action: I am ${me}; my PostgreSQL is down and left alone during maintenance${maintenanceNote(view, now)}`);
    return decision([{ type: 'start', role: 'standby' }], `starting PostgreSQL as a standby: nobody holds the lease`);
  }

  // A running standby.
  const manual = pendingManualFailover(view, now);
  if (manual !== null && manual.to === me) return decideManualFailover(view, config, now, record, acquire, manual);
  if (manual !== null && node.upstream !== null) {
    // Even during maintenance: the operator's target needs this position final to prove itself.
    return decision([{ type: 'detach', from: node.upstream }], `detaching from ${node.upstream}: an operator asked for a failover to ${manual.to}, which needs my position final`);
  }
  if (maintenanceActive(view.maintenance, now)) {
    const m = view.maintenance!;
    const following = node.upstream === null ? 'following nobody' : `following ${node.upstream}`;
    const actions: Action[] = [];
    if (last !== null) {
      actions.push(alert('maintenance-holds-failover', 'warning', `the lease of ${last} ended during maintenance (${m.reason}, by ${m.owner}); no automatic failover`));
    }
    return decision(actions, `no action: maintenance is on (${m.reason}, by ${m.owner}); I am ${me}, ${following}; no failover starts`);
  }
  if (record === null) {
    return decision(
      [alert('no-lease', 'critical', 'no lease and no primary: nothing proves which node has every acknowledged write')],
      `no action: there is no lease and no primary; I am ${me}, a standby, and cannot prove I have every acknowledged write`,
    );
  }
  if (node.upstream !== null) {
    return decision(
      [{ type: 'detach', from: node.upstream }],
      `detaching from ${node.upstream}: the term of ${last} ${record.released ? 'was released' : 'expired'} ${now - record.expiresAtMs} ms ago; my position must be final before a candidate is chosen`,
    );
  }
  const cooldownEndsMs = record.rolledBack ? record.expiresAtMs + rollbackCooldownMs(config) : -Infinity;
  if (last === me) {
    if (now < cooldownEndsMs) {
      return decision([], `no action: my promotion was rolled back; I am ${me} and stand aside for ${cooldownEndsMs - now} ms so another node can try`);
    }
    // A rolled-back candidate was proven when it took the lease and has not moved since.
    return decision([acquire, { type: 'promote' }], `promoting: I am ${me}, the last holder of the lease, and nobody took it since`);
  }
  return decideCandidacy(view, config, now, record, acquire, cooldownEndsMs);
}

/**
 * What is known of the acknowledged writes of `record.holder`'s ended term. Under ANY k of N
 * synchronous standbys, every acknowledged write is on k of them; once N−k+1 of them are known to
 * stream from nobody (or be stopped) since the term ended, their positions are final and at least
 * one of them has each acknowledged write. A candidate whose WAL contains the acknowledged part of
 * all of them has every acknowledged write.
 */
type Evidence =
  | { readonly known: false; readonly message: string }
  | {
      readonly known: true;
      readonly lastPrimaryLsn: number;
      /** "2 of 2 synchronous standbys with final positions (need 2)" */
      readonly summary: string;
      readonly shortfallOf: (wal: Wal) => { readonly name: string; readonly wal: Wal } | null;
    };

function takeoverEvidence(view: View, config: DecideConfig, record: LeaseRecord): Evidence {
  const node = view.node;
  const me = node.name;
  const last = record.holder;
  const lastState = findMember(view, last);
  // The quorum its writes were acknowledged by: what it published while running as primary; else
  // (last seen as a standby — a switchover target, a candidate whose promotion never showed — or
  // with its server down, which publishes no setting) the configured one, which the shell sets
  // before any promotion and keeps in force on every primary.
  const sync = lastState === undefined ? null : lastState.running && lastState.role === 'primary' ? lastState.synchronous : desiredSynchronous(config, last);
  if (sync === null || sync.quorum < 1) {
    const why = lastState === undefined ? `${last}'s state is unknown (never published, or its agent has been silent too long)` : `${last} ran without synchronous replication`;
    return { known: false, message: `cannot prove a candidate after ${last}'s term: ${why}` };
  }
  const termEndMs = record.expiresAtMs;
  const isFinal = (state: MemberState): boolean =>
    state.publishedAtMs >= termEndMs && (!state.running || (state.role === 'standby' && state.upstream === null));
  const finals: { readonly name: string; readonly wal: Wal }[] = [];
  const unknown: string[] = [];
  for (const name of sync.standbys) {
    if (name === me) {
      finals.push({ name, wal: node });
      continue;
    }
    const state = findMember(view, name);
    if (state !== undefined && isFinal(state)) finals.push({ name, wal: state });
    else unknown.push(name);
  }
  const needed = sync.standbys.length - sync.quorum + 1;
  if (finals.length < needed) {
    return {
      known: false,
      message: `cannot prove a candidate after ${last}'s term: ${finals.length} of ${sync.standbys.length} synchronous standbys have a final position (need ${needed}); not yet: ${unknown.join(', ')}`,
    };
  }
  // What of a final standby's WAL can hold acknowledged writes: all of it, unless it left the last
  // holder's history (an old primary demoted with WAL nobody acknowledged past the fork), then the
  // part up to the fork. Acknowledged writes of the holder's term are on its timeline; those of
  // earlier terms are before the fork, because the promotion that forked was proven to hold them.
  // Only when the holder published a timeline at least as new as the standby's: a stale record of
  // the holder must not cut a standby that followed it onto a newer timeline.
  const holderWal = lastState === undefined ? null : { ...lastState, flushedLsn: Number.POSITIVE_INFINITY };
  const acknowledgedPart = (wal: Wal): Wal =>
    holderWal === null || wal.timeline > holderWal.timeline ? wal : { ...wal, flushedLsn: commonPosition(wal, holderWal) };
  return {
    known: true,
    lastPrimaryLsn: lastState?.flushedLsn ?? 0,
    summary: `${finals.length} of ${sync.standbys.length} synchronous standbys with final positions (need ${needed})`,
    // The first final standby with acknowledged WAL that `wal` lacks, or null when it has it all.
    shortfallOf: (wal) => {
      for (const final of finals) {
        const part = acknowledgedPart(final.wal);
        if (!containsWal(wal, part)) return { name: final.name, wal: part };
      }
      return null;
    },
  };
}

/**
 * Whether this detached standby may take the ended term of `record.holder` over: the evidence
 * proves it has every acknowledged write, it is within the lag bound, and it is the most advanced
 * such standby (then the first by name).
 */
function decideCandidacy(
  view: View,
  config: DecideConfig,
  now: number,
  record: LeaseRecord,
  acquire: Action,
  cooldownEndsMs: number,
): Decision {
  const node = view.node;
  const me = node.name;
  const last = record.holder;
  const evidence = takeoverEvidence(view, config, record);
  if (!evidence.known) return noSafeCandidate(evidence.message, me);
  const lastPrimaryLsn = evidence.lastPrimaryLsn;
  const lagOf = (wal: Wal): number => Math.max(0, lastPrimaryLsn - wal.flushedLsn);
  const shortfallOf = (wal: Wal): string | null => evidence.shortfallOf(wal)?.name ?? null;
  const lag = lagOf(node);
  if (lag > config.maximumLagOnFailoverBytes) {
    return noSafeCandidate(
      `cannot promote ${me}: it is ${formatBytes(lag)} behind ${last}'s last known position ${formatLsn(lastPrimaryLsn)} (maximum ${formatBytes(config.maximumLagOnFailoverBytes)})`,
      me,
    );
  }
  const missing = shortfallOf(node);
  if (missing !== null) {
    const better = findMember(view, missing);
    const message = `I am ${me} and lack WAL that ${missing} has (mine ends at ${formatLsn(node.flushedLsn)} on timeline ${node.timeline})`;
    if (better !== undefined && better.running) return decision([], `no action: ${message}; it is the better candidate`);
    return noSafeCandidate(`${message}, and ${missing} is not running`, me);
  }

  // Another live, final, eligible standby that is further ahead (or equal and first by name) goes first.
  const freshSinceMs = now - candidateFreshnessMs(config);
  for (const other of view.members) {
    if (other.name === record.holder && now < cooldownEndsMs) continue;
    const live = other.publishedAtMs >= freshSinceMs && other.publishedAtMs >= record.expiresAtMs;
    if (!live || !other.running || other.role !== 'standby' || other.upstream !== null) continue;
    if (lagOf(other) > config.maximumLagOnFailoverBytes || shortfallOf(other) !== null) continue;
    const ahead = other.flushedLsn > node.flushedLsn || (other.flushedLsn === node.flushedLsn && other.name < me);
    if (ahead) {
      return decision([], `no action: I am ${me}; ${other.name} is the best candidate (${formatLsn(other.flushedLsn)}, mine ${formatLsn(node.flushedLsn)})`);
    }
  }
  return decision(
    [acquire, { type: 'promote' }],
    `promoting: the term of ${last} ended; I am ${me}, the most advanced (${formatLsn(node.flushedLsn)}) of ${evidence.summary}, ${formatBytes(lag)} behind ${last}`,
  );
}

function pendingManualFailover(view: View, now: number): ManualFailoverRequest | null {
  const request = view.manualFailover;
  return request !== null && now < request.expiresAtMs ? request : null;
}

/**
 * The target of a manual failover, a running standby, with no term running: detach first (so its
 * position is final), then take over with the takeover proof — ignoring the lag bound, the better
 * candidates and maintenance, which are the automatic policy — or, with `force`, without it,
 * saying what may be lost. Without proof and without force it refuses and names the gap.
 */
function decideManualFailover(view: View, config: DecideConfig, now: number, record: LeaseRecord | null, acquire: Action, request: ManualFailoverRequest): Decision {
  const node = view.node;
  const me = node.name;
  if (node.upstream !== null) {
    return decision([{ type: 'detach', from: node.upstream }], `detaching from ${node.upstream}: an operator asked for a failover to me; my position must be final`);
  }
  const evidence: Evidence = record === null ? { known: false, message: 'there has never been a lease, so nothing proves which node has every acknowledged write' } : takeoverEvidence(view, config, record);
  let gap: string | null = null;
  if (!evidence.known) {
    gap = evidence.message;
  } else {
    const short = evidence.shortfallOf(node);
    if (short !== null) {
      const bytes = short.wal.flushedLsn - node.flushedLsn;
      gap = `${short.name} has WAL up to ${formatLsn(short.wal.flushedLsn)} that I lack (mine ends at ${formatLsn(node.flushedLsn)}${bytes > 0 ? `, ${formatBytes(bytes)} behind` : ', on another timeline'})`;
    }
  }
  const promote: Action = { type: 'promote' };
  if (gap === null) {
    const proof = evidence.known ? evidence.summary : '';
    return decision(
      [acquire, promote, { type: 'answerFailover', revision: request.revision, outcome: 'accepted', detail: `proven to hold every acknowledged write (${proof})` }],
      `promoting on an operator's request: I am ${me} and hold every acknowledged write (${proof})`,
    );
  }
  if (!request.force) {
    return decision(
      [{ type: 'answerFailover', revision: request.revision, outcome: 'refused', detail: `cannot prove ${me} holds every acknowledged write: ${gap}` }],
      `refusing the manual failover to me: ${gap}`,
    );
  }
  const message = `forced failover to ${me} at ${formatLsn(node.flushedLsn)} on timeline ${node.timeline}: acknowledged writes may be lost (${gap})`;
  return decision(
    [acquire, promote, alert('manual-failover-forced', 'critical', message), { type: 'answerFailover', revision: request.revision, outcome: 'accepted', detail: message }],
    `promoting by force on an operator's request: ${gap}`,
  );
}

// ---------------------------------------------------------------------------------------------
// The lease store cannot be reached.

function decideWithoutStore(view: View, config: DecideConfig, now: number, lastKnown: LeaseRecord | null): Decision {
  const node = view.node;
  const me = node.name;
  if (!node.running) {
    if (maintenanceActive(view.maintenance, now)) {
      return decision([], `no action: the lease store is unreachable; my PostgreSQL is down and left alone during maintenance${maintenanceNote(view, now)}`);
    }
    return decision([{ type: 'start', role: 'standby' }], `starting PostgreSQL as a standby: the lease store is unreachable`);
  }
  if (node.role === 'standby') {
    const following = node.upstream === null ? 'following nobody' : `following ${node.upstream}`;
    return decision([], `no action: the lease store is unreachable; I am ${me}, ${following}`);
  }
  if (lastKnown !== null && lastKnown.holder !== me) {
    return decision(
      [{ type: 'demote' }, alert('lease-lost', 'critical', `${me} was a primary while the lease was last known held by ${lastKnown.holder}; demoted`)],
      `demoting: the lease store is unreachable and the lease was last known held by ${lastKnown.holder}; I am ${me}`,
    );
  }
  const mine = lastKnown !== null && !lastKnown.released;
  const leftMs = mine ? lastKnown.expiresAtMs - now : 0;
  if (mine && leftMs > safetyMarginMs(config)) {
    return decision(
      [alert('lease-store-unreachable', 'warning', `${me} cannot renew its lease: the lease store is unreachable`)],
      `no action: I am ${me}, the primary; the lease store is unreachable and my lease is good for ${leftMs} ms more`,
    );
  }
  const others = config.members.filter((name) => name !== me);
  const confirming = view.failsafe.filter((reply) => reply.confirms).map((reply) => reply.name);
  const denying = view.failsafe.filter((reply) => !reply.confirms).map((reply) => reply.name);
  const needed = Math.max(1, Math.min(node.synchronous?.quorum ?? config.synchronousQuorum, others.length));
  if (others.length === 0 || (denying.length === 0 && confirming.length >= needed)) {
    const who = others.length === 0 ? 'I have no standbys' : `${confirming.join(', ')} ${confirming.length === 1 ? 'confirms' : 'confirm'} me as their primary`;
    return decision(
      [alert('failsafe-active', 'warning', `${me} keeps taking writes without its lease: the lease store is unreachable and ${who}`)],
      `no action: I am ${me}, the primary in failsafe: the lease store is unreachable and ${who}`,
    );
  }
  const answer =
    denying.length > 0
      ? `${denying.join(', ')} no longer ${denying.length === 1 ? 'follows' : 'follow'} me`
      : `only ${confirming.length} of ${others.length} standbys confirm me (need ${needed})`;
  return decision(
    [{ type: 'demote' }, alert('lease-lost', 'critical', `${me} stopped taking writes: it cannot renew its lease and ${answer}`)],
    `demoting: I am ${me}; the lease store is unreachable, my lease ${lastKnown === null ? 'is unknown' : leftMs > 0 ? `ends in ${leftMs} ms` : 'has ended'} and ${answer}`,
  );
}

// ---------------------------------------------------------------------------------------------

function noSafeCandidate(message: string, me: string): Decision {
  return decision([alert('no-safe-candidate', 'critical', message)], `no action: I am ${me}; ${message}`);
}

function decision(actions: readonly Action[], reason: string): Decision {
  return { actions, reason };
}

function alert(code: FailoverAlertCode, severity: 'warning' | 'critical', message: string): Action {
  return { type: 'alert', code, severity, message };
}

function findMember(view: View, name: string): MemberState | undefined {
  for (const member of view.members) if (member.name === name) return member;
  return undefined;
}

function maintenanceNote(view: View, now: number): string {
  const m = view.maintenance;
  return maintenanceActive(m, now) ? ` (maintenance: ${m!.reason}, by ${m!.owner})` : '';
}

function sameSynchronous(a: SynchronousConfig | null, b: SynchronousConfig | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.quorum !== b.quorum || a.standbys.length !== b.standbys.length) return false;
  return a.standbys.every((name) => b.standbys.includes(name));
}

/** Assertions on what the shell hands in: a wrong view is a bug in the shell, never a decision. */
function checkInputs(view: View, config: DecideConfig, now: number): void {
  // Messages are built only on failure: this runs on every tick of every simulated agent.
  const margin = safetyMarginMs(config);
  if (!Number.isFinite(now)) fail(`now must be a finite number of ms, got ${now}`);
  if (!config.members.includes(view.node.name)) fail(`node "${view.node.name}" is not a member (${config.members.join(', ')})`);
  if (!(config.loopIntervalMs > 0)) fail(`loopIntervalMs must be positive, got ${config.loopIntervalMs}`);
  if (!(config.leaseTtlMs > margin)) fail(`leaseTtlMs (${config.leaseTtlMs}) must exceed the safety margin of 2 × loopIntervalMs (${margin})`);
  if (!(config.failoverDeadlineMs > margin)) fail(`failoverDeadlineMs (${config.failoverDeadlineMs}) must exceed 2 × loopIntervalMs (${margin})`);
  if (!(config.primaryStartTimeoutMs > 0)) fail(`primaryStartTimeoutMs must be positive, got ${config.primaryStartTimeoutMs}`);
  if (!(config.synchronousQuorum >= 0)) fail(`synchronousQuorum must not be negative, got ${config.synchronousQuorum}`);
  if (!(config.maximumLagOnFailoverBytes >= 0)) fail(`maximumLagOnFailoverBytes must not be negative, got ${config.maximumLagOnFailoverBytes}`);
  for (const member of view.members) {
    if (member.name === view.node.name) fail(`members must not include this node ("${member.name}")`);
  }
}

function fail(message: string): never {
  throw new Error(`decide: ${message}`);
}
