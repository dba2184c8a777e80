// The failover folder's entry file: the only one other folders import. The decision core
// (`decide`), the shapes it reads and returns, the WAL helpers the agent needs to fill a view, and the
// seeded simulator that proves the core. See docs/failover-core.md.
export {
  candidateFreshnessMs,
  confirmsPrimary,
  decide,
  desiredSynchronous,
  maintenanceActive,
  memberStateOf,
  rollbackCooldownMs,
  safetyMarginMs,
  termActive,
} from './decide.ts';
export { canStreamFrom, commonPosition, containsWal, formatBytes, formatLsn, timelineAt } from './wal.ts';
export {
  describeSchedule,
  describeViolation,
  parseSchedule,
  replay,
  scheduleFor,
  simulate,
  simulateMany,
  simulateSchedule,
} from './simulator.ts';
export type {
  FaultEvent,
  FaultKind,
  InvariantName,
  ManyResult,
  Schedule,
  SimulationOptions,
  SimulationResult,
  SimulationStats,
  Violation,
} from './simulator.ts';
export type {
  Action,
  DecideConfig,
  DecideFunction,
  Decision,
  FailoverAlertCode,
  FailsafeReply,
  LeaseRecord,
  LeaseView,
  MaintenanceRecord,
  MemberState,
  NodeObservation,
  Role,
  SynchronousConfig,
  TimelineSwitch,
  View,
  Wal,
  WalPosition,
} from './types.ts';
export {
  defaultLeaseStoreTimeoutMs,
  isLeaseStoreUnavailable,
  leaseStoreLimits,
  LeaseStoreRejected,
  LeaseStoreUnavailable,
  type Entry,
  type Guard,
  type LeaseStore,
} from './lease-store.ts';
export { createLocalLeaseClient, generateLeaseToken, startLocalLeaseServer, type LocalLeaseServer } from './lease-local.ts';
export { createEtcdLeaseStore, type EtcdLeaseStoreOptions } from './lease-etcd.ts';
export { leaseKeys, parseSynchronous, readTimelineHistory, runAgent, type AgentOptions, type MemberAddress, type StoredManualFailover, type StoredSwitchover } from './agent.ts';
