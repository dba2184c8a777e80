// LISTEN on the primary, following it: one dedicated connection (a pooled one cannot hold a
// LISTEN), opened to whichever node is primary now, and opened again — on the new primary — when
// the connection fails or the primary changes. Every (re)subscription is reported, so the caller
// can catch up on what was announced while nobody listened (NOTIFY is not stored).
import pg from 'pg';

/** A live subscription; `close()` ends it. */
export interface Subscription {
  close(): Promise<void>;
}

/** What `listen` needs to know. */
export interface ListenOptions {
  channel: string;
  /** The connection string of the current primary, or undefined while there is none. */
  primaryUrl(): string | undefined;
  onNotification(payload: string): void;
  /** After each LISTEN that took effect, the first included: catch up from the durable log. */
  onSubscribed(): void;
  connectTimeoutMs: number;
  applicationName?: string;
}

// How often the listener checks that it listens on the current primary, and waits after a failure.
const checkMs = 250;

export function listen(options: ListenOptions): Subscription {
  let client: pg.Client | undefined;
  let connectedTo: string | undefined;
  let closed = false;
  let busy = false;

  async function drop(): Promise<void> {
    const old = client;
    client = undefined;
    connectedTo = undefined;
    await old?.end().catch(() => undefined);
  }

  async function ensure(): Promise<void> {
    if (busy || closed) return;
    busy = true;
    try {
      const url = options.primaryUrl();
      if (client !== undefined && url === connectedTo) return;
      await drop();
      if (url === undefined) return;
      const next = new pg.Client({ connectionString: url, connectionTimeoutMillis: options.connectTimeoutMs, application_name: options.applicationName ?? 'parley-listen', keepAlive: true });
      next.on('error', () => {
        if (client === next) void drop();
      });
      next.on('end', () => {
        if (client === next) {
          client = undefined;
          connectedTo = undefined;
        }
      });
      next.on('notification', (message) => {
        if (message.channel === options.channel && message.payload !== undefined) options.onNotification(message.payload);
      });
      try {
        await next.connect();
        // A standby accepts LISTEN but never notifies: listen only on a node that is primary now.
        const recovery = await next.query<{ recovery: boolean }>('SELECT pg_is_in_recovery() AS recovery');
        if (recovery.rows[0]?.recovery) throw new Error('not a primary');
        await next.query(`LISTEN ${options.channel}`);
      } catch {
        await next.end().catch(() => undefined);
        return;
      }
      if (closed) {
        await next.end().catch(() => undefined);
        return;
      }
      client = next;
      connectedTo = url;
      options.onSubscribed();
    } finally {
      busy = false;
    }
  }

  const timer = setInterval(() => void ensure(), checkMs);
  timer.unref();
  void ensure();
  return {
    async close() {
      closed = true;
      clearInterval(timer);
      await drop();
    },
  };
}
