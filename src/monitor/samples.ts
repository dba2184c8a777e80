// What the ops process observes of the cluster once a second: one `Sample`, plain data only (no
// methods, no Dates, no Maps), so a second of the cluster can be kept for an hour in memory, sent
// as JSON by the ops API, written to the journal and replayed through the pure evaluator.
//
// Conventions every field keeps (the sampler promises them, the rules rely on them):
// - times are milliseconds since the epoch on the ops process's clock (`...Ms`), or null when never
//   seen; the sampler converts PostgreSQL's timestamps, which on one machine share that clock;
// - a value the sampler could not read is null, never 0: a lag of 0 means "measured, no lag", and
//   confusing the two is exactly postgres_exporter's blind spot (its PR #977);
// - every configured node and app server is listed in every sample, answering or not: one that
//   cannot be reached keeps its entry (`reachable: false`, `role: 'unknown'`; a stale `lastSeenMs`),
//   so its alerts fire rather than resolve because it vanished from the list;
// - rates (`...PerSec`) are averaged over a trailing window of about 10 s, not the last second
//   alone, so that a rule's `for` is not reset by one quiet second in a burst of errors.

/** What a node says it is (`pg_is_in_recovery()`), or `unknown` when it could not be asked. */
export type NodeRole = 'primary' | 'standby' | 'unknown';

/**
 * `pg_stat_wal_receiver.status` on a standby. A standby with no WAL receiver process has no row
 * there; the sampler reports that as null. A frozen receiver (SIGSTOP) keeps showing `streaming`,
 * which is why `lastMsgReceiptMs` is sampled too.
 */
export type WalReceiverStatus = 'stopped' | 'starting' | 'streaming' | 'waiting' | 'restarting' | 'stopping';

/** Every value of `WalReceiverStatus`, for validation. */
export const walReceiverStatuses: readonly WalReceiverStatus[] = ['stopped', 'starting', 'streaming', 'waiting', 'restarting', 'stopping'];

/** `pg_stat_replication.sync_state` of a standby as the primary reports it (`quorum` under `ANY k`). */
export type SyncState = 'sync' | 'quorum' | 'async' | 'potential';

/** Every value of `SyncState`, for validation. */
export const syncStates: readonly SyncState[] = ['sync', 'quorum', 'async', 'potential'];

/** Every value of `NodeRole`, for validation. */
export const nodeRoles: readonly NodeRole[] = ['primary', 'standby', 'unknown'];

/** One PostgreSQL node and its agent, as seen in one sample. */
export interface NodeSample {
  /** The member name, `node1`. */
  readonly name: string;
  readonly role: NodeRole;
  /** Whether the sampler's probe query answered this second. */
  readonly reachable: boolean;
  /** When the node's agent last published its state, or null if it never has. */
  readonly agentLastSeenMs: number | null;
  /** The standby's own WAL receiver status; null on a primary and when the standby has no receiver. */
  readonly walReceiverStatus: WalReceiverStatus | null;
  /** `pg_stat_wal_receiver.last_msg_receipt_time` on the standby: advances at least once a second while the heartbeat runs. */
  readonly lastMsgReceiptMs: number | null;
  /** WAL positions as byte offsets (an LSN `X/Y` is `X * 2^32 + Y`). Sent is the primary's view of this standby. */
  readonly sentLsn: number | null;
  readonly writeLsn: number | null;
  readonly flushLsn: number | null;
  readonly replayLsn: number | null;
  /** The primary's current WAL position minus this standby's replay position; 0 on the primary. */
  readonly lagBytes: number | null;
  /**
   * How old the newest heartbeat row replayed here is, in seconds. The primary writes that row every
   * second, so an idle primary shows at most about a second and a stalled standby grows by one a second.
   */
  readonly lagSeconds: number | null;
  /** This standby's `sync_state` on the primary; null on the primary and when the primary has no row for it. */
  readonly syncState: SyncState | null;
  /** Whether the app servers currently send reads to this node. */
  readonly inReadPool: boolean;
  /** Whether this node may currently be promoted (healthy, caught up, not under maintenance). */
  readonly candidate: boolean;
  /** Free and total bytes of the file system holding the data directory. */
  readonly diskFreeBytes: number | null;
  readonly diskTotalBytes: number | null;
}

/** The primary's load, from `pg_stat_activity` and `pg_stat_database`. */
export interface PrimarySample {
  /** Which node this is. */
  readonly name: string;
  /** Client backends connected. */
  readonly connections: number;
  /** Sessions running a statement. */
  readonly active: number;
  /** Sessions waiting on a lock (`wait_event_type = 'Lock'`). */
  readonly waiting: number;
  readonly maxConnections: number;
  /** Commits per second (trailing window). */
  readonly commitsPerSec: number;
}

/** Errors of one kind seen by one app server (a rate over the trailing window). */
export interface ErrorRate {
  /** The stable error code (`storage_unavailable`, `overloaded`, …). */
  readonly cause: string;
  /** What was behind it: a node name, `primary`, `lease-store`, … */
  readonly dependency: string;
  readonly perSec: number;
}

/** One app server, from its `/metrics`. */
export interface AppServerSample {
  readonly name: string;
  /** When its `/metrics` last answered, or null if it never has. */
  readonly lastSeenMs: number | null;
  readonly requestsPerSec: number;
  readonly errors: readonly ErrorRate[];
}

/** The primary's lease as the lease store has it. */
export interface LeaseSample {
  readonly holder: string | null;
  readonly expiresAtMs: number;
}

/** A failover under way, from the agents' published state. */
export interface FailoverSample {
  readonly inProgress: boolean;
  readonly startedAtMs: number;
}

/**
 * The maintenance record. `on` is the record's own flag, not "on and not yet expired": a record
 * that is on past its expiry means the work may still be running while automatic failover is armed
 * again, which is what the MaintenanceExpired rule is for.
 */
export interface MaintenanceSample {
  readonly on: boolean;
  readonly expiresAtMs: number;
  readonly reason: string;
  /** The one node under maintenance, or null for the whole cluster. */
  readonly node: string | null;
}

/** Everything observed in one sampling round. */
export interface Sample {
  /** When this sample was taken. */
  readonly timestampMs: number;
  readonly nodes: readonly NodeSample[];
  /** Null when no node answered as primary. */
  readonly primary: PrimarySample | null;
  readonly appServers: readonly AppServerSample[];
  /** Null when the lease store could not be read. */
  readonly lease: LeaseSample | null;
  /** Null when no failover is under way. */
  readonly failover: FailoverSample | null;
  /** Null when there is no maintenance record. */
  readonly maintenance: MaintenanceSample | null;
}
