// Test support: a throwaway PostgreSQL, provisioned, with an app server listening on a free port.
// Used by api tests and benchmarks; never by production code.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
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

/** A minimal HTTP client for tests: JSON in, status + parsed body + headers out. */
export function httpClient(baseUrl: string) {
  async function call(method: string, path: string, options: { body?: unknown; token?: string | undefined; raw?: string; headers?: Record<string, string> } = {}) {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
    const response = await fetch(`${baseUrl}${path}`, { method, headers, body });
    const text = await response.text();
    let json: any = undefined;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: response.status, body: json, text, headers: response.headers };
  }
  return {
    call,
    get: (path: string, token?: string) => call('GET', path, { token }),
    post: (path: string, body: unknown, token?: string) => call('POST', path, { body, token }),
    del: (path: string, token?: string) => call('DELETE', path, { token }),
    /** Registers and signs in a fresh account; returns its token and account. */
    async signUp(prefix = 'u'): Promise<{ token: string; id: string; username: string }> {
      const username = `${prefix}${randomBytes(5).toString('hex')}`.slice(0, 32);
      const created = await call('POST', '/v1/accounts', { body: { username, password: 'correct-horse' } });
      if (created.status !== 201) throw new Error(`sign-up failed: ${created.status} ${created.text}`);
      const session = await call('POST', '/v1/sessions', { body: { username, password: 'correct-horse' } });
      if (session.status !== 201) throw new Error(`sign-in failed: ${session.status} ${session.text}`);
      return { token: session.body.token, id: session.body.account.id, username };
    },
  };
}

/** A superuser connection to the app database of `t` (to hold locks, read pg_stat_activity). */
export async function adminClient(t: TestApp): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl({ port: t.server.port, user: 'postgres', password: t.server.superuserPassword, database: appDatabaseName }) });
  await client.connect();
  return client;
}

/** Waits until `condition` holds; the bound only stops a hang (an event, not a timing). */
export async function waitForEvent(what: string, condition: () => boolean | Promise<boolean>, boundMs = 30_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`gave up after ${boundMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The series of metric `name` on the app server at `baseUrl`, by their full series text. */
export async function metricSeries(baseUrl: string, name: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      const at = line.lastIndexOf(' ');
      values.set(line.slice(0, at), Number(line.slice(at + 1)));
    }
  }
  return values;
}
