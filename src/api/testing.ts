// Test support: a throwaway PostgreSQL, provisioned, with an app server listening on a free port.
// Used by api tests and benchmarks; never by production code.
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { loadConfig, type ConfigInput } from '../config/config.ts';
import { appDatabaseName, appRoleName, databaseUrl, provisionDatabase } from '../data/data.ts';
import { freePort, startThrowawayServer, type ThrowawayServer } from '../postgres/postgres.ts';
import { startAppServer, type AppServer } from './api.ts';

/** A running app server on its own database. */
export interface TestApp {
  url: string;
  wsUrl: string;
  server: ThrowawayServer;
  app: AppServer;
  appDatabaseUrl: string;
  stop(): Promise<void>;
}

/** Starts PostgreSQL + one app server; `stop()` removes both. */
export async function startTestApp(overrides: ConfigInput = {}): Promise<TestApp> {
  const server = await startThrowawayServer();
  try {
    const appPassword = randomBytes(18).toString('base64url');
    await provisionDatabase({ superuserUrl: server.superuserUrl, appPassword });
    const config = loadConfig({ env: {}, overrides: { log: { level: 'silent' }, ...overrides } });
    const port = await freePort();
    const url = databaseUrl({ port: server.port, user: appRoleName, password: appPassword, database: appDatabaseName });
    const app = await startAppServer({ config, databaseUrl: url, port, host: '127.0.0.1', logger: pino({ level: 'silent' }) });
    return {
      url: app.url,
      wsUrl: app.url.replace(/^http/, 'ws'),
      server,
      app,
      appDatabaseUrl: url,
      async stop() {
        await app.close().catch(() => undefined);
        await server.stop();
      },
    };
  } catch (error) {
    await server.stop();
    throw error;
  }
}
