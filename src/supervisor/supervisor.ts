// supervisor/: `parley up` and the commands that act on it (down, status, operator add), plus the
// app-server child process it starts. It starts, watches and stops processes; it takes no decisions
// about the cluster (those belong to failover/). Other folders use it through this file only.
export { runAppServer, type ReadyMessage } from './app-server.ts';
export { addOperator, readStatus, requireRunning, stopRunning } from './control.ts';
export { decideRestart, defaultRestartPolicy, type RestartDecision, type RestartPolicy } from './restart-core.ts';
export { statePaths, type StatePaths, type SupervisorState } from './state.ts';
export { formatStatus, type AppServerStatus, type ClusterStatus, type NodeStatus } from './status-core.ts';
export { runUp, type UpOptions } from './up.ts';
export { runAgentProcess } from './agent-process.ts';
export { parseDuration, runMaintenance, startMaintenance, stopMaintenance } from './maintenance.ts';
export { runSwitchover, switchoverRefusal } from './switchover.ts';
export { runManualFailover } from './manual-failover.ts';
export { ackAlert, firingAlerts, formatAlerts, readAlerts, type AlertListing } from './alerts.ts';
export { runOpsProcess } from './ops-process.ts';
