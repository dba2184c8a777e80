// WebSocket /v1/stream: live events out, send/typing/read in. Every socket has a bounded send
// buffer (a consumer that cannot keep up is disconnected and catches up with /v1/sync, so the
// server's memory does not grow), a bounded queue of frames in flight, and ping/pong heartbeats.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Caller, Chat, ChatEvent } from '../chat/chat.ts';
import type { DatabaseHealth } from '../data/data.ts';
import { errorTitles, isParleyError, ParleyError, type ErrorCode } from '../errors/errors.ts';
import { countError, type Metrics } from './metrics.ts';
import type { RateLimiter } from './rate-limit.ts';
import { clientFrame, describeProblems } from './schemas.ts';

/** Limits of the stream. */
export interface StreamOptions {
  sendBufferMaxBytes: number;
  pingIntervalMs: number;
  frameMaxBytes: number;
  connectionsMax: number;
}

/** How often the database's state is looked at for changes to tell sockets about. */
const statusCheckMs = 250;

function statusFrame(health: DatabaseHealth): { type: 'status'; state: 'ok' | 'degraded'; detail: string } {
  return { type: 'status', state: health.state === 'ok' ? 'ok' : 'degraded', detail: health.detail };
}

/** Frames one socket may have in flight before further ones are refused. */
const inFlightMax = 64;

type ServerFrame = ChatEvent | { type: 'ack'; clientMessageId: string; message: unknown } | { type: 'error'; clientMessageId?: string; code: ErrorCode; detail: string } | { type: 'status'; state: 'ok' | 'degraded'; detail: string };

function refuse(socket: Duplex, code: ErrorCode, detail: string, retryAfterSeconds = 2): void {
  const status = new ParleyError(code, detail).status;
  const body = JSON.stringify({ type: `https://parley.invalid/problems/${code}`, title: errorTitles[code], status, detail, code });
  socket.end(
    `HTTP/1.1 ${status} ${errorTitles[code]}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${status === 503 ? `Retry-After: ${retryAfterSeconds}\r\n` : ''}\r\n${body}`,
  );
}

function tokenOf(request: IncomingMessage, url: URL): string | undefined {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match?.[1] ?? url.searchParams.get('token') ?? undefined;
}

/** Serves /v1/stream on the app's HTTP server. */
export function attachStream(
  app: FastifyInstance,
  deps: { chat: Chat; metrics: Metrics; limiter: RateLimiter; stream: StreamOptions; logger: Logger; health: () => DatabaseHealth },
): void {
  const { chat, metrics, limiter, stream, logger } = deps;
  const wss = new WebSocketServer({ noServer: true, maxPayload: stream.frameMaxBytes, clientTracking: true, perMessageDeflate: false });
  let open = 0;

  // The database's state as sockets last heard it: every socket is told when it changes, so
  // clients can say "degraded" (sends may be refused; reads still work) and "back" (API.md).
  const statusListeners = new Set<(frame: ServerFrame) => void>();
  let told = statusFrame(deps.health());
  const watch = setInterval(() => {
    const now = statusFrame(deps.health());
    if (now.state === told.state) return;
    told = now;
    logger.info({ state: now.state, detail: now.detail }, 'database status changed; telling sockets');
    for (const listener of statusListeners) listener(now);
  }, statusCheckMs);
  watch.unref();

  app.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname !== '/v1/stream') return refuse(socket, 'not_found', `No WebSocket at ${url.pathname}; use /v1/stream`);
    if (open >= stream.connectionsMax) {
      metrics.socketsDropped.inc({ reason: 'connections_max' });
      return refuse(socket, 'overloaded', `This server has ${open} open sockets, its limit; retry another`);
    }
    const token = tokenOf(request, url);
    if (!token) return refuse(socket, 'unauthorized', 'Sign in first: pass the token as a bearer header or ?token=');
    // Connecting is a read: under overload a socket waits its turn behind sends (the client retries).
    chat.authenticate(token, { priority: 'read' }).then(
      (caller) => wss.handleUpgrade(request, socket, head, (ws) => serve(ws, caller)),
      (error: unknown) => {
        countError(metrics, error, '/v1/stream');
        if (isParleyError(error)) refuse(socket, error.code, error.message, error.retryAfterSeconds);
        else refuse(socket, 'internal', 'Something went wrong on our side');
      },
    );
  });

  function serve(ws: WebSocket, caller: Caller): void {
    open++;
    metrics.sockets.inc();
    let alive = true;
    let inFlight = 0;
    let queue: Promise<void> = Promise.resolve();

    function send(frame: ServerFrame): void {
      if (ws.readyState !== ws.OPEN) return;
      const data = JSON.stringify(frame);
      if (ws.bufferedAmount + data.length > stream.sendBufferMaxBytes) {
        // Too slow to keep up: close rather than buffer without bound. The client resyncs.
        metrics.socketsDropped.inc({ reason: 'send_buffer_full' });
        ws.close(4008, 'send buffer full: reconnect and catch up with /v1/sync');
        setTimeout(() => ws.terminate(), 1000).unref();
        return;
      }
      ws.send(data);
    }

    function fail(error: unknown, clientMessageId?: string): void {
      countError(metrics, error, '/v1/stream');
      if (isParleyError(error)) {
        send({ type: 'error', ...(clientMessageId ? { clientMessageId } : {}), code: error.code, detail: error.message });
      } else {
        logger.error({ err: error, account: caller.id }, 'unexpected error on stream');
        send({ type: 'error', ...(clientMessageId ? { clientMessageId } : {}), code: 'internal', detail: 'Something went wrong on our side; it has been logged' });
      }
    }

    async function handle(raw: RawData, isBinary: boolean): Promise<void> {
      let value: unknown;
      try {
        if (isBinary) throw new Error('binary');
        value = JSON.parse(raw.toString());
      } catch {
        throw new ParleyError('validation_failed', 'A frame must be a JSON text object like {"type":"send",...}');
      }
      const parsed = clientFrame.safeParse(value);
      if (!parsed.success) {
        const clientMessageId = typeof (value as { clientMessageId?: unknown })?.clientMessageId === 'string' ? (value as { clientMessageId: string }).clientMessageId.slice(0, 64) : undefined;
        throw Object.assign(new ParleyError('validation_failed', describeProblems(parsed.error, 'frame')), { clientMessageId });
      }
      const frame = parsed.data;
      const wait = limiter.take(`account:${caller.id}`, Date.now());
      if (wait > 0) throw new ParleyError('rate_limited', `Too many frames from this account; retry in ${wait} s`, { retryAfterSeconds: wait });
      const conversationId = chat.parseConversationId(frame.conversationId);
      if (frame.type === 'send') {
        const result = await chat.send(caller, { conversationId, clientMessageId: frame.clientMessageId, body: frame.body });
        if (result.created) metrics.messagesSent.inc({ transport: 'websocket' });
        send({ type: 'ack', clientMessageId: frame.clientMessageId, message: result.message });
      } else if (frame.type === 'typing') {
        await chat.typing(caller, conversationId);
      } else {
        await chat.markRead(caller, { conversationId, seq: frame.seq });
      }
    }

    const unsubscribe = chat.subscribe(caller.id, (event) => send(event));
    statusListeners.add(send);
    send(told.state === 'ok' ? { type: 'status', state: 'ok', detail: 'connected' } : told);

    ws.on('message', (raw, isBinary) => {
      if (inFlight >= inFlightMax) {
        fail(new ParleyError('rate_limited', `More than ${inFlightMax} frames in flight; wait for acks`, { retryAfterSeconds: 1 }));
        return;
      }
      inFlight++;
      // Frames of one socket are handled in order, so acks come back in the order sent.
      queue = queue
        .then(() => handle(raw, isBinary))
        .catch((error: unknown) => fail(error, (error as { clientMessageId?: string }).clientMessageId ?? clientIdOf(raw)))
        .finally(() => {
          inFlight--;
        });
    });
    ws.on('pong', () => {
      alive = true;
    });
    const heartbeat = setInterval(() => {
      if (!alive) {
        metrics.socketsDropped.inc({ reason: 'no_pong' });
        ws.terminate();
        return;
      }
      alive = false;
      ws.ping();
    }, stream.pingIntervalMs);
    heartbeat.unref();
    ws.on('error', () => undefined);
    ws.on('close', () => {
      open--;
      metrics.sockets.dec();
      clearInterval(heartbeat);
      statusListeners.delete(send);
      unsubscribe();
    });
  }

  app.addHook('onClose', async () => {
    clearInterval(watch);
    for (const client of wss.clients) client.close(1001, 'server shutting down');
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    for (const client of wss.clients) client.terminate();
  });
}

function clientIdOf(raw: RawData): string | undefined {
  try {
    const value = JSON.parse(raw.toString()) as { clientMessageId?: unknown };
    return typeof value.clientMessageId === 'string' ? value.clientMessageId.slice(0, 64) : undefined;
  } catch {
    return undefined;
  }
}
