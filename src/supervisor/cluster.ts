// Creating a new cluster (the first `parley up` on an empty DIR): initdb node1, provision the app's
// database and the replication role, then clone every other node from it with pg_basebackup. After
// this the agents take over; the supervisor never decides who is primary.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { appRoleName, databaseUrl, provisionDatabase } from '../data/data.ts';
import {
  cloneFromPrimary,
  ensureReplicationRole,
  ensureSlots,
  initDataDir,
  replicationRoleName,
  standbySettings,
  startServer,
  stopServer,
  writeServerSettings,
  writeStandbySignal,
  type OsAccount,
  type PgBinaries,
} from '../postgres/postgres.ts';
import type { Secrets } from './state.ts';

/** One node of the cluster being created. */
export interface NewNode {
  name: string;
  port: number;
  dataDir: string;
  logFile: string;
}

/**
 * Builds the cluster's data directories. node1 becomes the first primary; the others are its
 * standbys, each with its own replication slot. Returns the applied migrations.
 */
export async function createCluster(options: {
  nodes: readonly NewNode[];
  bin: PgBinaries;
  account: OsAccount | undefined;
  secrets: Secrets;
  settings: { maxConnections: number; sharedBuffers: string };
  out: (line: string) => void;
}): Promise<number[]> {
  const { bin, account, secrets, out } = options;
  const [first, ...rest] = options.nodes;
  if (!first) throw new Error('a cluster needs at least one node');
  out(`${first.name}: creating a new PostgreSQL ${bin.major} data directory in ${first.dataDir}`);
  initDataDir({ bin, dataDir: first.dataDir, account, superuserPassword: secrets.superuserPassword });
  writeServerSettings(first.dataDir, { port: first.port, ...options.settings }, account);
  const handle = await startServer({ bin, dataDir: first.dataDir, account, port: first.port, logFile: first.logFile, superuserPassword: secrets.superuserPassword });
  try {
    const superuser = { port: first.port, user: 'postgres', password: secrets.superuserPassword };
    const provisioned = await provisionDatabase({
      superuserUrl: databaseUrl({ ...superuser, database: 'postgres' }),
      appPassword: secrets.appPassword,
    });
    out(`database: created for role ${appRoleName} (migrations ${provisioned.applied.join(', ')})`);
    await ensureReplicationRole(superuser, secrets.replicationPassword);
    await ensureSlots(superuser, rest.map((n) => n.name));
    const replication = { port: first.port, user: replicationRoleName, password: secrets.replicationPassword };
    for (const node of rest) {
      out(`${node.name}: cloning from ${first.name} (pg_basebackup)`);
      await cloneFromPrimary({ bin, account, dataDir: node.dataDir, source: replication });
      writeServerSettings(node.dataDir, { port: node.port, ...options.settings, extra: standbySettings({ nodeName: node.name, primary: replication }) }, account);
      writeStandbySignal(node.dataDir, account);
      writeFileSync(join(node.dataDir, '..', 'agent-state.json'), `${JSON.stringify({ upstream: first.name })}\n`);
    }
    return provisioned.applied;
  } finally {
    await stopServer(handle, { timeoutMs: 30_000 });
  }
}
