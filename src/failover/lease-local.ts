// The one-machine lease store: an in-memory map served over HTTP/JSON on 127.0.0.1 by the
// supervisor, and the client the agents use to reach it. It needs no other process, which is what
// makes `parley up` work from a clean clone; across machines the agents use etcd (lease-etcd.ts).
//
// Expiry is judged by this process's monotonic clock (performance.now), never by a client's or by
// the wall clock, so a clock step on the machine cannot end or prolong a lease. The wall clock only
// seeds the revision counter, so that revisions handed out before a restart of the supervisor are
// never handed out again: a holder with a stale revision loses its CAS instead of matching a stranger.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  checkGuards,
  checkKey,
  checkPrefix,
  checkRevision,
  checkTtl,
  checkValue,
  defaultLeaseStoreTimeoutMs,
  LeaseStoreRejected,
  leaseStoreLimits,
  LeaseStoreUnavailable,
  valueBytes,
  withDeadline,
  type CallOptions,
  type CasOptions,
  type DeleteOptions,
  type Entry,
  type Guard,
  type LeaseStore,
  type LeaseStoreRejection,
  type WriteOptions,
} from './lease-store.ts';

/** Live keys the local store holds at most; a write of a new key past it is refused as `full`. */
export const localLeaseKeysMax = 10_000;

// A request carries one value of at most 64 KiB, which JSON escaping can grow up to six-fold.
const requestBytesMax = 6 * leaseStoreLimits.valueBytesMax + 4096;
// A list answers at most listBytesMax of values plus keys and revisions, escaped.
const responseBytesMax = 6 * leaseStoreLimits.listBytesMax + leaseStoreLimits.listEntriesMax * 1024;
const sweepIntervalMs = 1000;
const tokenLengthMin = 16;

interface StoredRecord {
  value: string;
  revision: number;
  /** On this process's performance.now() scale; undefined = never expires. */
  expiresAtMs: number | undefined;
}

/** A fresh random bearer token for the local store (the supervisor writes it to the state dir). */
export function generateLeaseToken(): string {
  return randomBytes(32).toString('base64url');
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === 'localhost' || host === '::1' || host === '[::1]';
}

/** The map, its expiry and its revision counter: the store's semantics, without HTTP. */
function createMemoryStore(options: { keysMax: number; initialRevision: number; holdCreatesMs: number }) {
  const records = new Map<string, StoredRecord>();
  let revision = options.initialRevision;
  const now = (): number => performance.now();
  const createsFromMs = now() + options.holdCreatesMs;

  const nextRevision = (): number => {
    revision += 1;
    // Revisions travel as decimal strings and callers may parse them as numbers: stay exact.
    if (!Number.isSafeInteger(revision)) throw new Error(`Cannot hand out revision ${revision}: past 2^53`);
    return revision;
  };

  /** The record under `key` unless absent or expired; an expired one is dropped on the spot. */
  const live = (key: string, at: number): StoredRecord | undefined => {
    const record = records.get(key);
    if (record === undefined) return undefined;
    if (record.expiresAtMs !== undefined && record.expiresAtMs <= at) {
      records.delete(key);
      return undefined;
    }
    return record;
  };

  const entryOf = (key: string, record: StoredRecord, at: number): Entry => {
    const entry: Entry = { key, value: record.value, revision: String(record.revision) };
    // Floor, so that a client adding this to its own send time never overestimates the expiry.
    if (record.expiresAtMs !== undefined) entry.ttlRemainingMs = Math.max(0, Math.floor(record.expiresAtMs - at));
    return entry;
  };

  const sweep = (): void => {
    const at = now();
    for (const key of records.keys()) live(key, at);
  };

  const guardsHold = (guards: readonly Guard[] | undefined, at: number): boolean =>
    (guards ?? []).every((guard) => {
      const record = live(guard.key, at);
      return guard.revision === null ? record === undefined : record !== undefined && String(record.revision) === guard.revision;
    });

  const write = (key: string, value: string, ttlMs: number | undefined, at: number): Entry => {
    if (!records.has(key) && records.size >= options.keysMax) {
      sweep();
      if (records.size >= options.keysMax) {
        throw new LeaseStoreRejected('full', `Cannot write "${key}": the local lease store holds ${records.size} keys, its limit`);
      }
    }
    const record: StoredRecord = { value, revision: nextRevision(), expiresAtMs: ttlMs === undefined ? undefined : at + ttlMs };
    records.set(key, record);
    const entry: Entry = { key, value, revision: String(record.revision) };
    // Exactly the ttl: recomputing it from expiresAtMs could round (at + ttl) - at below it.
    if (ttlMs !== undefined) entry.ttlRemainingMs = ttlMs;
    return entry;
  };

  return {
    sweep,
    get(key: string): Entry | undefined {
      const at = now();
      const record = live(key, at);
      return record === undefined ? undefined : entryOf(key, record, at);
    },
    list(prefix: string): Entry[] {
      const at = now();
      const entries: Entry[] = [];
      let bytes = 0;
      for (const [key, record] of records) {
        if (!key.startsWith(prefix) || live(key, at) === undefined) continue;
        bytes += valueBytes(record.value);
        if (entries.length >= leaseStoreLimits.listEntriesMax || bytes > leaseStoreLimits.listBytesMax) {
          throw new LeaseStoreRejected(
            'too-large',
            `Cannot list "${prefix}": more than ${leaseStoreLimits.listEntriesMax} entries or ${leaseStoreLimits.listBytesMax} bytes; narrow the prefix`,
          );
        }
        entries.push(entryOf(key, record, at));
      }
      return entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    },
    create(key: string, value: string, ttlMs: number | undefined, guards: readonly Guard[] | undefined): Entry | undefined {
      const at = now();
      // Just started: a key this store has forgotten may still be held by someone who took it from
      // the store's previous life, so nobody takes a key until any such lease has run out.
      if (at < createsFromMs) return undefined;
      if (live(key, at) !== undefined || !guardsHold(guards, at)) return undefined;
      return write(key, value, ttlMs, at);
    },
    update(key: string, value: string, expected: string, ttlMs: number | undefined, guards: readonly Guard[] | undefined): Entry | undefined {
      const at = now();
      const record = live(key, at);
      if (record === undefined || String(record.revision) !== expected || !guardsHold(guards, at)) return undefined;
      return write(key, value, ttlMs, at);
    },
    put(key: string, value: string, ttlMs: number | undefined): Entry {
      return write(key, value, ttlMs, now());
    },
    delete(key: string, expected: string | undefined): boolean {
      const record = live(key, now());
      if (record === undefined || (expected !== undefined && String(record.revision) !== expected)) return false;
      records.delete(key);
      return true;
    },
  };
}

type MemoryStore = ReturnType<typeof createMemoryStore>;

const rejectionStatus: Record<LeaseStoreRejection, number> = { invalid: 400, 'too-large': 413, full: 507, unauthorized: 401 };

/** Validates one request body and applies it; throws `LeaseStoreRejected` on bad input. */
function dispatch(store: MemoryStore, op: string, body: Record<string, unknown>): unknown {
  const { key, value, revision, ttlMs, guards, prefix } = body;
  switch (op) {
    case 'get':
      checkKey(key);
      return { entry: store.get(key) ?? null };
    case 'list':
      checkPrefix(prefix);
      return { entries: store.list(prefix) };
    case 'create':
      checkKey(key);
      checkValue(key, value);
      checkTtl(key, ttlMs);
      checkGuards(guards);
      return { entry: store.create(key, value, ttlMs, guards) ?? null };
    case 'update':
      checkKey(key);
      checkValue(key, value);
      checkRevision(key, revision);
      checkTtl(key, ttlMs);
      checkGuards(guards);
      return { entry: store.update(key, value, revision, ttlMs, guards) ?? null };
    case 'put':
      checkKey(key);
      checkValue(key, value);
      checkTtl(key, ttlMs);
      return { entry: store.put(key, value, ttlMs) };
    case 'delete':
      checkKey(key);
      if (revision !== undefined) checkRevision(key, revision);
      return { deleted: store.delete(key, revision) };
    default:
      throw new LeaseStoreRejected('invalid', `Unknown lease store operation ${JSON.stringify(op)}`);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, close = false): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(text);
}

/** Reads the request body, refusing it past `requestBytesMax`; undefined when refused (already answered). */
function readBody(req: IncomingMessage, res: ServerResponse): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    const tooLarge = (): void => {
      // Close the connection: the rest of an oversized body is not worth reading.
      sendJson(res, 413, { error: 'too-large', detail: `Request body over ${requestBytesMax} bytes` }, true);
      resolve(undefined);
    };
    if (declared > requestBytesMax) {
      tooLarge();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > requestBytesMax) {
        refused = true;
        tooLarge();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!refused) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    // A client that gave up mid-body leaves nothing to answer; settle instead of waiting forever.
    req.on('close', () => resolve(undefined));
    req.on('error', reject);
  });
}

/** A running local lease store. */
export interface LocalLeaseServer {
  /** http://127.0.0.1:port, what clients are given. */
  url: string;
  port: number;
  /** Stops serving and drops every connection; the entries are gone with it. */
  close(): Promise<void>;
}

/** Options of `startLocalLeaseServer`. */
export interface LocalLeaseServerOptions {
  /** Loopback only: the token travels in clear text. Default 127.0.0.1. */
  host?: string;
  /** 0 = any free port. */
  port?: number;
  /** Shared secret every request must carry as `Authorization: Bearer <token>`. */
  token: string;
  /** Default `localLeaseKeysMax`. */
  keysMax?: number;
  /**
   * After a restart, `create` answers "held" for this long, so that no one takes a lease that a
   * holder may still believe it has from before the restart. Pass the longest ttl clients use
   * (cluster.leaseTtlMs) whenever agents may have run against an earlier instance; default 0.
   */
  holdCreatesMs?: number;
  /** Where the revision counter starts; default the wall clock in µs, so restarts never reuse one. */
  initialRevision?: number;
  /** Told about unexpected errors (bugs), which are answered with 500 and no details. */
  onError?: (error: unknown) => void;
}

/** Starts the in-memory lease store on 127.0.0.1 (run by the supervisor, one per machine). */
export async function startLocalLeaseServer(options: LocalLeaseServerOptions): Promise<LocalLeaseServer> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host)) throw new Error(`Cannot serve the local lease store on "${host}": loopback only, since its token travels in clear text`);
  if (options.token.length < tokenLengthMin) throw new Error(`Cannot serve the local lease store: its token must be at least ${tokenLengthMin} characters`);
  const store = createMemoryStore({
    keysMax: options.keysMax ?? localLeaseKeysMax,
    initialRevision: options.initialRevision ?? Date.now() * 1000,
    holdCreatesMs: options.holdCreatesMs ?? 0,
  });
  // Comparing digests keeps the comparison constant-time whatever the length of the presented token.
  const expected = createHash('sha256').update(`Bearer ${options.token}`).digest();
  const authorized = (header: string | undefined): boolean =>
    header !== undefined && timingSafeEqual(createHash('sha256').update(header).digest(), expected);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const match = /^\/v1\/([a-z]+)$/.exec(req.url ?? '');
    if (req.method !== 'POST' || match === null) {
      sendJson(res, 404, { error: 'invalid', detail: 'POST /v1/<operation>' });
      return;
    }
    if (!authorized(req.headers.authorization)) {
      sendJson(res, 401, { error: 'unauthorized', detail: 'Missing or wrong bearer token' });
      return;
    }
    const text = await readBody(req, res);
    if (text === undefined) return;
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      sendJson(res, 400, { error: 'invalid', detail: 'The body is not JSON' });
      return;
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      sendJson(res, 400, { error: 'invalid', detail: 'The body must be a JSON object' });
      return;
    }
    try {
      sendJson(res, 200, dispatch(store, match[1] ?? '', body as Record<string, unknown>));
    } catch (error) {
      if (!(error instanceof LeaseStoreRejected)) throw error;
      sendJson(res, rejectionStatus[error.reason], { error: error.reason, detail: error.message });
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      options.onError?.(error);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal', detail: 'Internal error' }, true);
      else res.destroy();
    });
  });
  // Bounded: a slow or stuck client cannot hold a request, nor open sockets without end. The idle
  // keep-alive time is longer than the client's (30 s), so the client closes idle sockets first
  // and never sends on a socket the server is closing.
  server.requestTimeout = 5000;
  server.headersTimeout = 5000;
  server.keepAliveTimeout = 60_000;
  server.maxConnections = 512;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const sweeper = setInterval(() => store.sweep(), sweepIntervalMs);
  sweeper.unref();
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        clearInterval(sweeper);
        server.close(() => resolve());
        // Keep-alive sockets would otherwise hold close() open for as long as clients idle.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** Options of `createLocalLeaseClient`. */
export interface LocalLeaseClientOptions {
  /** The server's `url` (loopback only). */
  url: string;
  token: string;
  /** Per call; default `defaultLeaseStoreTimeoutMs`. */
  timeoutMs?: number;
}

interface WireEntry {
  key: string;
  value: string;
  revision: string;
  ttlRemainingMs?: number;
}

function isWireEntry(value: unknown): value is WireEntry {
  if (typeof value !== 'object' || value === null) return false;
  const entry = value as Record<string, unknown>;
  return (
    typeof entry.key === 'string' &&
    typeof entry.value === 'string' &&
    typeof entry.revision === 'string' &&
    (entry.ttlRemainingMs === undefined || typeof entry.ttlRemainingMs === 'number')
  );
}

/** `value[name]` when `value` is an object; undefined otherwise (an answer is never trusted blindly). */
function field(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}

function toEntry(wire: WireEntry): Entry {
  const entry: Entry = { key: wire.key, value: wire.value, revision: wire.revision };
  if (wire.ttlRemainingMs !== undefined) entry.ttlRemainingMs = wire.ttlRemainingMs;
  return entry;
}

const rejectionByStatus = new Map<number, LeaseStoreRejection>([
  [400, 'invalid'],
  [401, 'unauthorized'],
  [413, 'too-large'],
  [507, 'full'],
]);

/** A `LeaseStore` on the local server, over keep-alive HTTP. */
export function createLocalLeaseClient(options: LocalLeaseClientOptions): LeaseStore {
  const url = new URL(options.url);
  if (url.protocol !== 'http:' || !isLoopback(url.hostname)) {
    throw new Error(`Cannot use "${options.url}" as the local lease store: it is served over http on loopback only`);
  }
  const timeoutMs = options.timeoutMs ?? defaultLeaseStoreTimeoutMs;
  const base = url.origin;
  const authorization = `Bearer ${options.token}`;
  // A few sockets kept open: one per concurrent call of an agent, without a new TCP handshake each
  // loop. Idle sockets are closed after 30 s, before the server's 60 s, to never race its close.
  const agent = new Agent({ keepAlive: true, maxSockets: 8, maxFreeSockets: 4, timeout: 30_000 });
  let closed = false;

  /** One POST; a read retried once when a kept-alive socket turned out to be dead. */
  const post = (op: string, body: unknown, what: string, signal: AbortSignal, idempotent: boolean): Promise<unknown> => {
    const payload = JSON.stringify(body);
    const attempt = (retriesLeft: number): Promise<unknown> =>
      new Promise<unknown>((resolve, reject) => {
        const req = request(
          {
            host: url.hostname.replace(/^\[|\]$/g, ''),
            port: url.port,
            path: `/v1/${op}`,
            method: 'POST',
            agent,
            signal,
            headers: {
              authorization,
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(payload),
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (chunk: Buffer) => {
              size += chunk.length;
              if (size > responseBytesMax) {
                res.destroy();
                reject(new LeaseStoreUnavailable(`${what}: the answer is larger than ${responseBytesMax} bytes`));
                return;
              }
              chunks.push(chunk);
            });
            res.on('error', (error) => reject(new LeaseStoreUnavailable(`${what}: ${error.message}`, { cause: error })));
            res.on('end', () => {
              let parsed: unknown;
              try {
                parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
              } catch {
                reject(new LeaseStoreUnavailable(`${what}: answered ${res.statusCode} with a body that is not JSON`));
                return;
              }
              const status = res.statusCode ?? 0;
              if (status === 200) {
                resolve(parsed);
                return;
              }
              const detail = field(parsed, 'detail');
              const reason = typeof detail === 'string' ? detail : `status ${status}`;
              const rejection = rejectionByStatus.get(status);
              reject(rejection === undefined ? new LeaseStoreUnavailable(`${what}: ${reason}`) : new LeaseStoreRejected(rejection, `${what}: ${reason}`));
            });
          },
        );
        req.on('error', (error: NodeJS.ErrnoException) => {
          if (signal.aborted) {
            reject(signal.reason);
          } else if (idempotent && retriesLeft > 0 && req.reusedSocket && error.code === 'ECONNRESET') {
            attempt(retriesLeft - 1).then(resolve, reject);
          } else {
            reject(new LeaseStoreUnavailable(`${what}: ${error.code ?? error.message}`, { cause: error }));
          }
        });
        req.end(payload);
      });
    return attempt(1);
  };

  const call = (op: string, body: unknown, what: string, callOptions: CallOptions | undefined, idempotent = false): Promise<unknown> => {
    const label = `${what} at the lease store ${base}`;
    if (closed) return Promise.reject(new LeaseStoreUnavailable(`${label}: the client is closed`));
    return withDeadline(label, timeoutMs, callOptions?.signal, (signal) => post(op, body, label, signal, idempotent));
  };

  const entryFrom = (answer: unknown, what: string): Entry | undefined => {
    const entry = field(answer, 'entry');
    if (entry === null) return undefined;
    if (!isWireEntry(entry)) throw new LeaseStoreUnavailable(`${what}: the store answered with a malformed entry`);
    return toEntry(entry);
  };

  return {
    async get(key, opts) {
      checkKey(key);
      return entryFrom(await call('get', { key }, `get "${key}"`, opts, true), `get "${key}"`);
    },
    async list(prefix, opts) {
      checkPrefix(prefix);
      const answer = await call('list', { prefix }, `list "${prefix}"`, opts, true);
      const entries = field(answer, 'entries');
      if (!Array.isArray(entries) || !entries.every(isWireEntry)) throw new LeaseStoreUnavailable(`list "${prefix}": the store answered with malformed entries`);
      return entries.map(toEntry);
    },
    async create(key, value, opts: CasOptions = {}) {
      checkKey(key);
      checkValue(key, value);
      checkTtl(key, opts.ttlMs);
      checkGuards(opts.guards);
      return entryFrom(await call('create', { key, value, ttlMs: opts.ttlMs, guards: opts.guards }, `create "${key}"`, opts), `create "${key}"`);
    },
    async update(key, value, revision, opts: CasOptions = {}) {
      checkKey(key);
      checkValue(key, value);
      checkRevision(key, revision);
      checkTtl(key, opts.ttlMs);
      checkGuards(opts.guards);
      const answer = await call('update', { key, value, revision, ttlMs: opts.ttlMs, guards: opts.guards }, `update "${key}"`, opts);
      return entryFrom(answer, `update "${key}"`);
    },
    async put(key, value, opts: WriteOptions = {}) {
      checkKey(key);
      checkValue(key, value);
      checkTtl(key, opts.ttlMs);
      const entry = entryFrom(await call('put', { key, value, ttlMs: opts.ttlMs }, `put "${key}"`, opts), `put "${key}"`);
      if (entry === undefined) throw new LeaseStoreUnavailable(`put "${key}": the store answered without an entry`);
      return entry;
    },
    async delete(key, opts: DeleteOptions = {}) {
      checkKey(key);
      if (opts.revision !== undefined) checkRevision(key, opts.revision);
      const answer = await call('delete', { key, revision: opts.revision }, `delete "${key}"`, opts);
      const deleted = field(answer, 'deleted');
      if (typeof deleted !== 'boolean') throw new LeaseStoreUnavailable(`delete "${key}": the store answered without a result`);
      return deleted;
    },
    async close() {
      closed = true;
      agent.destroy();
    },
  };
}
