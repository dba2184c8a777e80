// api/: the HTTP and WebSocket server. Entry point for app-server processes.
// (Placeholder while the real routes are written: answers /healthz only.)
import Fastify from 'fastify';
import type { Config } from '../config/config.ts';

/** A listening app server. */
export interface AppServer {
  url: string;
  close(): Promise<void>;
}

/** Starts an app server on host:port against the app database URL. */
export async function startAppServer(options: { config: Config; databaseUrl: string; port: number; host?: string }): Promise<AppServer> {
  const app = Fastify();
  app.get('/healthz', async () => ({ state: 'ok' }));
  const host = options.host ?? options.config.http.host;
  await app.listen({ port: options.port, host });
  return { url: `http://${host}:${options.port}`, close: () => app.close() };
}
