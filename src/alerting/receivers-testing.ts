// Test support: real receivers on 127.0.0.1 for alerting's channels. An HTTP server that records
// every POST (a webhook or heartbeat receiver) and an SMTP server (the smtp-server package) that
// records every message and can be stopped and started again on the same port, to play an SMTP
// relay that goes down and comes back. Tests wait for what they expect with `waitFor`, an event,
// never a sleep; every receiver is closed by the test that started it.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { z } from 'zod';

/** Items received so far, and a way to wait for one that matches. */
export interface Inbox<T> {
  readonly items: T[];
  /** Resolves with the first item (already received or still to come) that matches. */
  waitFor(match?: (item: T) => boolean): Promise<T>;
}

/** An inbox fed by `push` (e.g. a journal callback), for tests that wait for an event. */
export function createInbox<T>(): Inbox<T> & { push(item: T): void } {
  const items: T[] = [];
  const waiters: { match: (item: T) => boolean; resolve: (item: T) => void }[] = [];
  return {
    items,
    push(item) {
      items.push(item);
      for (const waiter of [...waiters]) {
        if (waiter.match(item)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(item);
        }
      }
    },
    waitFor(match = () => true) {
      const found = items.find(match);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ match, resolve }));
    },
  };
}

/** A free TCP port on 127.0.0.1 (free when asked; tests bind it right away). */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** One POST the HTTP receiver got. */
export interface HttpRequestRecord {
  path: string;
  body: unknown;
}

/** An HTTP receiver: records POSTs; `status` is what it answers (set 500 to play a broken one). */
export interface HttpReceiver extends Inbox<HttpRequestRecord> {
  readonly url: string;
  status: number;
  close(): Promise<void>;
}

/** Starts an HTTP receiver on 127.0.0.1 and a free port. */
export async function startHttpReceiver(): Promise<HttpReceiver> {
  const inbox = createInbox<HttpRequestRecord>();
  let status = 200;
  const server: Server = createHttpServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: kept as text, the test will say so
      }
      response.writeHead(status, { 'content-type': 'text/plain' }).end('ok');
      if (status < 300) inbox.push({ path: request.url ?? '/', body });
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return {
    items: inbox.items,
    waitFor: inbox.waitFor,
    url: `http://127.0.0.1:${address.port}`,
    get status() {
      return status;
    },
    set status(value: number) {
      status = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** One message the SMTP receiver accepted. */
export interface MailRecord {
  from: string;
  to: string[];
  /** The whole message as sent: headers and body. */
  raw: string;
}

/** An SMTP receiver on a fixed port that can be stopped and started again, like a relay that fails. */
export interface SmtpReceiver extends Inbox<MailRecord> {
  readonly port: number;
  readonly running: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** An SMTP receiver on a free port of 127.0.0.1, not started yet. */
export async function createSmtpReceiver(): Promise<SmtpReceiver> {
  const port = await freePort();
  const inbox = createInbox<MailRecord>();
  let server: SMTPServer | undefined;
  const receiver: SmtpReceiver = {
    port,
    items: inbox.items,
    waitFor: inbox.waitFor,
    get running() {
      return server !== undefined;
    },
    async start() {
      if (server !== undefined) return;
      // A fresh server each start: a closed SMTPServer is not meant to listen again.
      const fresh = new SMTPServer({
        authOptional: true,
        disabledCommands: ['STARTTLS', 'AUTH'],
        logger: false,
        closeTimeout: 200,
        onData(stream, session, callback) {
          const chunks: Buffer[] = [];
          stream.on('data', (chunk: Buffer) => chunks.push(chunk));
          stream.on('end', () => {
            const from = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
            inbox.push({ from, to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
            callback();
          });
        },
      });
      await new Promise<void>((resolve, reject) => {
        fresh.server.once('error', reject);
        fresh.listen(port, '127.0.0.1', () => resolve());
      });
      server = fresh;
    },
    async stop() {
      const current = server;
      server = undefined;
      if (current !== undefined) await new Promise<void>((resolve) => current.close(() => resolve()));
    },
  };
  return receiver;
}

const labels = z.record(z.string(), z.string());
const isoTime = z.iso.datetime({ offset: true });

/**
 * API.md's "Webhook payload", written out independently of channels.ts so a test checks the
 * sender against the contract rather than against itself: Alertmanager's webhook v4, with
 * labels.alertname/severity/node always set and a one-line annotations.summary.
 */
export const alertmanagerV4Schema = z.strictObject({
  version: z.literal('4'),
  groupKey: z.string().min(1),
  truncatedAlerts: z.number().int().min(0),
  status: z.enum(['firing', 'resolved']),
  receiver: z.string().min(1),
  groupLabels: labels,
  commonLabels: labels,
  commonAnnotations: labels,
  externalURL: z.string(),
  alerts: z
    .array(
      z.strictObject({
        status: z.enum(['firing', 'resolved']),
        labels: labels.refine((l) => Boolean(l.alertname && l.severity && l.node), 'labels.alertname, severity and node must be set'),
        annotations: labels.refine((a) => typeof a.summary === 'string' && a.summary.length > 0 && !/[\r\n]/.test(a.summary), 'annotations.summary must be one line'),
        startsAt: isoTime,
        endsAt: isoTime,
        generatorURL: z.string(),
        fingerprint: z.string().min(1),
      }),
    )
    .min(1),
});
