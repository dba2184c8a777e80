// The shapes `decide()` reads and returns. This file is pure data: no imports, no clock, no I/O.
// The agent loop (the imperative shell) fills a `View` each tick from its PostgreSQL, the lease
// store and its peers, calls `decide(view, config, now)`, performs the returned actions in order and
// journals the reason. The simulator fills the same shapes from its model of a cluster.
//
// Times are milliseconds on one clock per call: `now` is the observing agent's clock, and the shell
// converts the lease store's times (lease expiry, publication times) into it. Within one machine the
// local lease store shares the clock; across machines the shell stamps what it reads with its own
// send time, which errs on the early side for the holder and the late side for everyone else.

/**
 * A WAL position (an LSN) as a number of bytes: `0/3000060` is 0x3000060. PostgreSQL's LSNs are
 * 64-bit; a number is exact up to 2^53 bytes (8 PiB of WAL), which the shell asserts when it parses.
 */
export type WalPosition = number;

/** What a PostgreSQL server is: a primary takes writes, a standby is in recovery. */
export type Role = 'primary' | 'standby';

/** One line of a timeline history file: `timeline` ended at `endLsn`, where its successor began. */
export interface TimelineSwitch {
  readonly timeline: number;
  readonly endLsn: WalPosition;
}

/**
 * A server's WAL as far as it goes: its current timeline, the timelines before it (oldest first,
 * as in `NNN.history`), and how far it has WAL flushed to disk. Two servers whose timelines agree at
 * a position have identical WAL up to it, because timeline ids are never reused in a cluster.
 */
export interface Wal {
  readonly timeline: number;
  readonly history: readonly TimelineSwitch[];
  /** Primary: `pg_current_wal_flush_lsn()`. Standby: `pg_last_wal_receive_lsn()` (received and flushed). */
  readonly flushedLsn: WalPosition;
}

/** `synchronous_standby_names = 'ANY quorum (standbys…)'`: a commit waits for `quorum` of them. */
export interface SynchronousConfig {
  readonly quorum: number;
  readonly standbys: readonly string[];
}

/** What an agent observed of its own node this tick. */
export interface NodeObservation extends Wal {
  /** The node's name, one of `DecideConfig.members`. */
  readonly name: string;
  /** PostgreSQL accepts connections. */
  readonly running: boolean;
  /**
   * Since when (this agent's clock) PostgreSQL has not answered; null while it runs. An agent that
   * starts counts from its own start, so a restarted agent gives its server the full time again.
   */
  readonly downSinceMs: number | null;
  /**
   * What the server is. When it is not running, what its data directory would start as
   * (`standby.signal` present → standby; `pg_controldata` "in production" → primary).
   */
  readonly role: Role;
  /** `pg_last_wal_replay_lsn()` on a standby, equal to `flushedLsn` on a primary. */
  readonly replayedLsn: WalPosition;
  /** The node `primary_conninfo` points at, or null when it follows nobody. */
  readonly upstream: string | null;
  /** The WAL receiver is connected to `upstream` (`pg_stat_wal_receiver.status = 'streaming'`). */
  readonly streaming: boolean;
  /** The synchronous replication setting the server runs with; null when empty (asynchronous). */
  readonly synchronous: SynchronousConfig | null;
}

/**
 * What a member last published to the lease store: its `NodeObservation` after it acted, stamped
 * with the time the store received it. Possibly stale: its agent may have died since.
 */
export interface MemberState extends Wal {
  readonly name: string;
  readonly publishedAtMs: number;
  readonly running: boolean;
  readonly role: Role;
  readonly upstream: string | null;
  readonly streaming: boolean;
  readonly synchronous: SynchronousConfig | null;
  /** Whom it believed to be the primary when it published (the valid lease holder it saw), or null. */
  readonly primarySeen: string | null;
}

/**
 * The leader lease as the lease store holds it. One record per cluster; every write (acquire, renew,
 * release) changes `revision`, so a compare-and-set on the revision proves nothing happened since it
 * was read. A term is the span from `acquiredAtMs` to `expiresAtMs` (or to the release).
 *
 * The record outlives its term: who held the lease last, and when that term ended, are what a
 * takeover is proven against. With a store whose keys vanish at their TTL, the shell keeps the record
 * (or a companion key it compare-and-sets on every acquisition) without a TTL, and passes as
 * `expiresAtMs` of a vanished term no earlier a time than the term could have ended.
 */
export interface LeaseRecord {
  /** The node that holds the lease, or held it last when the term has ended. */
  readonly holder: string;
  /** The store's opaque revision token (lease-store.ts `Entry.revision`). */
  readonly revision: string;
  /** When `holder` took the lease: the start of its term, kept across renewals. */
  readonly acquiredAtMs: number;
  /** When the term ends unless renewed; on release, the time of the release. */
  readonly expiresAtMs: number;
  /** The holder gave the lease up (a rollback, or fenced by its supervisor after a proven death). */
  readonly released: boolean;
  /** Released because the holder could not promote within the failover deadline. */
  readonly rolledBack: boolean;
}

/** The lease as read this tick, or, when the store was unreachable, the last record this agent knew. */
export type LeaseView =
  | { readonly known: true; readonly record: LeaseRecord | null }
  | { readonly known: false; readonly lastKnown: LeaseRecord | null };

/**
 * The maintenance lease. While `active` and not expired, no automatic failover starts. Acquiring
 * the leader lease compares this record's revision too, so maintenance cannot begin between a
 * candidate's decision and its acquisition.
 */
export interface MaintenanceRecord {
  readonly revision: string;
  readonly active: boolean;
  readonly expiresAtMs: number;
  readonly reason: string;
  readonly owner: string;
  /**
   * Maintenance of one standby (`parley maintenance start --node`): that node is left alone and is
   * never a candidate, and the primary takes it out of its synchronous set; failover goes on for
   * the rest. Absent or null: the whole cluster.
   */
  readonly node?: string | null;
}

/**
 * An operator's request to hand the primary role from `from` to `to` (`parley switchover`), valid
 * until `expiresAtMs`. Only `from`, while it holds the lease, acts on it.
 */
export interface SwitchoverRequest {
  readonly revision: string;
  readonly from: string;
  readonly to: string;
  readonly expiresAtMs: number;
}

/**
 * An operator's request to make `to` the primary when no healthy primary exists (`parley failover`),
 * valid until `expiresAtMs`. Without `force`, `to` takes over only with the takeover proof (lag bound
 * and maintenance aside: the operator decided); with it, regardless, and says what may be lost.
 */
export interface ManualFailoverRequest {
  readonly revision: string;
  readonly to: string;
  readonly force: boolean;
  readonly expiresAtMs: number;
}

/** A peer's direct answer to "am I still your primary?", asked only while the store is unreachable. */
export interface FailsafeReply {
  readonly name: string;
  readonly confirms: boolean;
}

/** Everything one agent observed on one loop tick. */
export interface View {
  readonly node: NodeObservation;
  readonly lease: LeaseView;
  /** The maintenance record read with the lease (the last known one when the store is unreachable); null if never set. */
  readonly maintenance: MaintenanceRecord | null;
  /** The other members' last published states (not this node's); members that never published are absent. */
  readonly members: readonly MemberState[];
  /** Replies from the peers the agent could reach directly; gathered only when the store is unreachable and this node is a primary. */
  readonly failsafe: readonly FailsafeReply[];
  /** A pending switchover request, read with the lease; null when there is none. */
  readonly switchover: SwitchoverRequest | null;
  /** A pending manual failover request, read with the lease; null when there is none. */
  readonly manualFailover: ManualFailoverRequest | null;
}

/** The subset of the cluster configuration `decide()` needs (from `cluster` in src/config/schema.ts). */
export interface DecideConfig {
  /** Every node of the cluster, this one included. */
  readonly members: readonly string[];
  /** k in `ANY k (…)`: standbys that must flush a commit before it is acknowledged. */
  readonly synchronousQuorum: number;
  readonly leaseTtlMs: number;
  readonly loopIntervalMs: number;
  readonly failoverDeadlineMs: number;
  readonly maximumLagOnFailoverBytes: number;
  /**
   * A lease holder whose PostgreSQL has been down this long (restarts in place failing) releases the
   * lease so a standby takes over: a primary that cannot start must not hold the cluster (invariant 7).
   */
  readonly primaryStartTimeoutMs: number;
}

/** Alert codes `decide()` raises; the alerting part deduplicates by code while the condition lasts. */
export type FailoverAlertCode =
  | 'lease-store-unreachable'
  | 'failsafe-active'
  | 'lease-lost'
  | 'foreign-lease'
  | 'other-primary'
  | 'no-safe-candidate'
  | 'no-lease'
  | 'failover-rolled-back'
  | 'primary-start-failed'
  | 'manual-failover-forced'
  | 'maintenance-holds-failover';

/**
 * What the shell does, in order. It stops at the first action that fails (a compare-and-set that
 * loses, a promotion that errors), except that alerts are always sent. Every action that can make
 * this node a writer (`promote`, `start` as primary) comes right after a lease write in the same
 * decision, so a decision carried out late by a paused agent fails at the lease write instead.
 */
export type Action =
  /** Extend this node's term by `ttlMs` if the record still has `revision` and has not ended. */
  | { readonly type: 'renewLease'; readonly revision: string; readonly ttlMs: number }
  /**
   * Take the lease for `ttlMs` if the lease record still has `revision` (null: no record yet) and the
   * maintenance record still has `maintenanceRevision` (null: none), in one compare-and-set (the
   * maintenance key as a guard).
   */
  | { readonly type: 'acquireLease'; readonly revision: string | null; readonly maintenanceRevision: string | null; readonly ttlMs: number }
  /** End this node's term now. `rollback` marks a failover that could not finish in time. */
  | { readonly type: 'releaseLease'; readonly revision: string; readonly rollback: boolean }
  /** `pg_ctl promote`: end recovery and take writes on a new timeline. Repeating it while pending is harmless. */
  | { readonly type: 'promote' }
  /** Stop taking writes: restart as a standby that follows nobody; cancels a pending promotion. */
  | { readonly type: 'demote' }
  /** Point `primary_conninfo` at `node` and restart as its standby. */
  | { readonly type: 'follow'; readonly node: string }
  /** Clear `primary_conninfo`: stream from nobody, so this node's position is final and can be compared. */
  | { readonly type: 'detach'; readonly from: string }
  /** Stop, `pg_rewind` from `node` (re-clone if rewind fails), then start as its standby. */
  | { readonly type: 'rewind'; readonly node: string }
  /** Start PostgreSQL; as a standby it follows nobody until a later `follow`. */
  | { readonly type: 'start'; readonly role: Role }
  /**
   * Switchover, carried out by the shell in one go: stop taking writes (a clean shutdown, which
   * streams every byte to the connected standbys), wait until `to` has received all of it, then
   * hand the lease to `to` by compare-and-set on `revision` and restart as its standby. If `to`
   * does not confirm in time or the lease write loses, start again as the primary (roll back).
   * The request `switchoverRevision` is cleared either way.
   */
  | { readonly type: 'handOver'; readonly to: string; readonly revision: string; readonly switchoverRevision: string }
  /** Answer the manual failover request `revision` (the operator's command waits for it). */
  | { readonly type: 'answerFailover'; readonly revision: string; readonly outcome: 'accepted' | 'refused'; readonly detail: string }
  /** Apply the setting to PostgreSQL and reload; null empties it (no synchronous standbys). */
  | { readonly type: 'setSynchronousStandbyNames'; readonly config: SynchronousConfig | null }
  | { readonly type: 'alert'; readonly code: FailoverAlertCode; readonly severity: 'warning' | 'critical'; readonly message: string };

/** The outcome of one tick: what to do (empty means wait) and one line saying why, Patroni-style. */
export interface Decision {
  readonly actions: readonly Action[];
  readonly reason: string;
}

/** The signature of `decide`, so the simulator can run a deliberately broken one. */
export type DecideFunction = (view: View, config: DecideConfig, now: number) => Decision;
