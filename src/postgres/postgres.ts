// postgres/: one PostgreSQL server — find binaries, initdb, configure, start, stop, probe.
// Knows nothing of clusters, leases or the app; the agent (failover/) and the supervisor drive it.
export { embeddedDir, findPgBinaries, type PgBinaries } from './binaries.ts';
export {
  giveToAccount,
  initDataDir,
  isInitialised,
  probeServer,
  runningPid,
  serverAccount,
  startServer,
  stopServer,
  stopStrayServer,
  writeServerSettings,
  type OsAccount,
  type ServerHandle,
  type ServerProbe,
  type ServerSettings,
} from './server.ts';
export { freePort, startThrowawayServer, type ThrowawayServer } from './throwaway.ts';
export {
  cloneFromPrimary,
  dropSlotsExcept,
  ensureReplicationRole,
  ensureSlots,
  formatLsn,
  hasStandbySignal,
  parseLsn,
  probeReplication,
  promoteServer,
  queryServer,
  readControlFile,
  reloadServer,
  quorumStandbyNames,
  replicationRoleName,
  rewindFrom,
  setSynchronousStandbys,
  standbySettings,
  writeStandbySignal,
  type Endpoint,
  type ReplicationProbe,
} from './replication.ts';
