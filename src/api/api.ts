// api/: the HTTP and WebSocket server. `startAppServer` is what an app-server process runs;
// `buildApp` is the same server without listening, for tests.
import pino, { type Logger } from 'pino';
import { createChat } from '../chat/chat.ts';
import type { Config } from '../config/config.ts';
import { createDatabase, type Database } from '../data/data.ts';
import { buildApp } from './app.ts';

export { buildApp, type AppOptions } from './app.ts';
export type { OpsLocation } from './ops-routes.ts';
export { openApiDocument } from './routes.ts';

/** A listening app server. */
export interface AppServer {
  url: string;
  close(): Promise<void>;
}

/** Starts an app server on host:port against the app database URL. */
export async function startAppServer(options: {
  config: Config;
  /** One database (tests, benchmarks), or `database`: a routed one that follows the primary. */
  databaseUrl?: string;
  database?: Database;
  port: number;
  host?: string;
  logger?: Logger;
  /** Where the ops process answers, for the /v1/ops/* views (parley up: DIR/ops.json). */
  ops?: () => { url: string; token: string } | undefined;
}): Promise<AppServer> {
  const { config } = options;
  const logger = options.logger ?? pino({ level: config.log.level, base: { part: 'app', port: options.port } });
  if (!options.database && !options.databaseUrl) throw new Error('startAppServer needs databaseUrl or database');
  const db =
    options.database ??
    createDatabase({
      url: options.databaseUrl!,
      poolSize: config.data.poolSize,
      queryTimeoutMs: config.data.queryTimeoutMs,
      connectTimeoutMs: config.data.connectTimeoutMs,
      applicationName: `parley-app-${options.port}`,
    });
  const chat = createChat(db, { sessionTtlHours: config.app.sessionTtlHours, resendWithinMs: config.data.failoverWaitMs, turnWaitMs: config.data.queryTimeoutMs, sessionCacheMs: config.data.readMaxLagMs, fanout: config.app.servers > 1 });
  const { app } = await buildApp({
    chat,
    db,
    logger,
    bodyLimitBytes: config.http.bodyLimitBytes,
    rateLimitPerMinute: config.http.rateLimitPerMinute,
    stream: config.websocket,
    ...(options.ops ? { ops: options.ops } : {}),
  });
  const host = options.host ?? config.http.host;
  try {
    await app.listen({ port: options.port, host });
  } catch (error) {
    await chat.close();
    await db.close();
    throw error;
  }
  return {
    url: `http://${host}:${options.port}`,
    async close() {
      await app.close();
      await chat.close();
      await db.close();
    },
  };
}
