// The app-server child process that `parley up` starts (`parley app-server`). It serves the API,
// tells its parent over IPC when it is ready, and exits as soon as that channel closes, so a
// supervisor killed with -9 leaves no app server behind.
import { startAppServer, type AppServer } from '../api/api.ts';
import { loadConfig } from '../config/config.ts';
import { ParleyError } from '../errors/errors.ts';

/** The message an app server sends its supervisor once it listens. */
export interface ReadyMessage {
  type: 'ready';
  url: string;
}

// Bound on a graceful close; open WebSockets or slow requests must not keep a stopping server up.
const closeTimeoutMs = 5000;

/** Runs one app server until SIGTERM/SIGINT or until its supervisor's IPC channel closes. */
export async function runAppServer(options: { dir: string; port: number; configFile?: string }): Promise<void> {
  const databaseUrl = process.env.PARLEY_DATABASE_URL;
  if (!databaseUrl) {
    throw new ParleyError('cli_usage', 'app-server is started by parley up, which sets PARLEY_DATABASE_URL; it is not set');
  }
  // The supervisor passes its command-line overrides as PARLEY_* variables, so this is the very
  // configuration it validated; --port only says which of its consecutive ports is ours.
  const config = loadConfig({ file: options.configFile, env: process.env });

  let server: AppServer | undefined;
  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    console.log(`app server on port ${options.port}: stopping (${why})`);
    const timer = setTimeout(() => {
      console.error(`app server on port ${options.port}: close took over ${closeTimeoutMs} ms; exiting anyway`);
      process.exit(1);
    }, closeTimeoutMs);
    timer.unref();
    void (server?.close() ?? Promise.resolve())
      .catch((error: unknown) => console.error(`app server on port ${options.port}: close failed: ${(error as Error).message}`))
      .finally(() => process.exit(0));
  };
  // Registered before listening: a supervisor that dies during our start must still take us down.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (process.send) {
    process.on('disconnect', () => stop('supervisor gone'));
    if (!process.connected) stop('supervisor gone');
  }

  server = await startAppServer({ config, databaseUrl, port: options.port, host: config.http.host });
  if (stopping) {
    await server.close();
    return;
  }
  console.log(`app server on port ${options.port}: listening at ${server.url} (pid ${process.pid}, dir ${options.dir})`);
  const ready: ReadyMessage = { type: 'ready', url: server.url };
  process.send?.(ready);
}
