// data/: the app's view of the database — pools, timeouts, admission control by priority, error
// classification, provisioning and migrations. Knows nothing of HTTP or chat; chat/ and api/ use it through this file only.
export { classifyDatabaseError, createDatabase, isConnectionLost, neverReachedServer, type Database, type DatabaseHealth, type DatabaseOptions, type Queryable } from './database.ts';
export { priorities, type Priority, type ShedReason } from './admission-core.ts';
export type { AdmissionStats } from './admission.ts';
export { failureOrigin, type FailureOrigin } from './failures.ts';
export { migrations, type Migration } from './migrations.ts';
export { appDatabaseName, appRoleName, databaseUrl, provisionDatabase } from './provision.ts';
export { createRoutedDatabase, withTimeout, type NodeUrl, type RoutedDatabase, type RoutedOptions, type Topology } from './routed.ts';
export type { Subscription } from './listen.ts';
