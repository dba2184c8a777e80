// The lease store the agents coordinate through: a small key-value store with compare-and-set and
// expiry. Two implementations keep the same contract (lease-store.test.ts runs one suite on both):
// lease-local.ts, served by the supervisor on 127.0.0.1 for one machine, and lease-etcd.ts for
// several. docs/lease-store.md is the operator's and the agent author's reference.
//
// Two rules every caller relies on:
//   - A call either answers (an entry, `undefined` for "CAS lost / absent", `true`/`false`) or
//     rejects. `LeaseStoreUnavailable` means "no answer in time": the write may or may not have
//     happened, so a holder treats it as "could not renew", never as "lost".
//   - Expiry is judged by the store's clock only. `ttlRemainingMs` is what the store had left when it
//     answered; a client that takes its own clock *before* sending the call has a lower bound on the
//     expiry in its own clock: `sentAtMs + ttlRemainingMs`.
import { ParleyError } from '../errors/errors.ts';

/** One key as the store holds it. */
export interface Entry {
  key: string;
  value: string;
  /** Opaque; changes on every write of this key. A decimal integer > 0 in both implementations. */
  revision: string;
  /** Milliseconds left before expiry as seen by the store when it answered; undefined = no ttl. */
  ttlRemainingMs?: number;
}

/** Extra condition of a compare-and-set: `key` must be at `revision`, or absent (or expired) for null. */
export interface Guard {
  key: string;
  revision: string | null;
}

/** Options every call takes. */
export interface CallOptions {
  /** Abandons the call; it then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of a write. */
export interface WriteOptions extends CallOptions {
  /** The entry expires this long after the write (as the store counts); omitted = never. */
  ttlMs?: number;
}

/** Options of a compare-and-set write (create, update). */
export interface CasOptions extends WriteOptions {
  /** Further keys that must be at the given revisions for the write to happen (e.g. maintenance). */
  guards?: readonly Guard[];
}

/** Options of a delete. */
export interface DeleteOptions extends CallOptions {
  /** Delete only if the key is at this revision; omitted = unconditional. */
  revision?: string;
}

/** The store the agents, the supervisor and the ops leader use. Every call has a timeout. */
export interface LeaseStore {
  /** The live entry under `key`, or undefined when absent or expired. */
  get(key: string, opts?: CallOptions): Promise<Entry | undefined>;
  /** Live entries whose key starts with `prefix`, sorted by key; rejects past `leaseStoreLimits.listEntriesMax`. */
  list(prefix: string, opts?: CallOptions): Promise<Entry[]>;
  /** Creates `key` only if absent (or expired) and every guard holds; undefined when someone holds it. */
  create(key: string, value: string, opts?: CasOptions): Promise<Entry | undefined>;
  /**
   * Replaces `key` only if it is at `revision` and every guard holds; the ttl afterwards is exactly
   * `ttlMs` (re-armed from now; none when omitted). Undefined when the CAS failed or the key is gone.
   */
  update(key: string, value: string, revision: string, opts?: CasOptions): Promise<Entry | undefined>;
  /** Writes `key` unconditionally (a member publishing its own state). */
  put(key: string, value: string, opts?: WriteOptions): Promise<Entry>;
  /** Deletes `key` (only at `opts.revision` when given); true when this call deleted it. */
  delete(key: string, opts?: DeleteOptions): Promise<boolean>;
  /** Releases connections; later calls reject with `LeaseStoreUnavailable`. */
  close(): Promise<void>;
}

/** The limits both implementations enforce, so a caller sees the same refusals on either. */
export const leaseStoreLimits = {
  keyLengthMax: 256,
  valueBytesMax: 65_536,
  /** A list answering more entries than this is refused: narrow the prefix. */
  listEntriesMax: 1000,
  /** A list whose values add up to more than this is refused. */
  listBytesMax: 4_194_304,
  /** A week: maintenance can be long, a forgotten lease must still end. */
  ttlMsMax: 604_800_000,
  guardsMax: 4,
} as const;

/** Each call's timeout unless the client is configured otherwise. */
export const defaultLeaseStoreTimeoutMs = 1000;

/** The store did not answer in time (or cannot be reached): the outcome of a write is unknown. */
export class LeaseStoreUnavailable extends ParleyError {
  constructor(detail: string, options: { cause?: unknown } = {}) {
    super('storage_unavailable', detail, { retryAfterSeconds: 1, ...options });
    this.name = 'LeaseStoreUnavailable';
  }
}

/** Why the store refused a call it did receive. */
export type LeaseStoreRejection = 'invalid' | 'too-large' | 'full' | 'unauthorized';

const rejectionCodes = {
  invalid: 'validation_failed',
  'too-large': 'payload_too_large',
  full: 'overloaded',
  unauthorized: 'unauthorized',
} as const;

/** The store refused the call (bad input, a limit, a wrong token): retrying the same call won't help. */
export class LeaseStoreRejected extends ParleyError {
  readonly reason: LeaseStoreRejection;

  constructor(reason: LeaseStoreRejection, detail: string) {
    super(rejectionCodes[reason], detail);
    this.name = 'LeaseStoreRejected';
    this.reason = reason;
  }
}

/** True when `error` is a `LeaseStoreUnavailable` (also across module copies). */
export function isLeaseStoreUnavailable(error: unknown): error is LeaseStoreUnavailable {
  return error instanceof LeaseStoreUnavailable || (error instanceof Error && error.name === 'LeaseStoreUnavailable');
}

// Keys are names the agents choose (`parley/leader`, `parley/members/node1`); a narrow alphabet
// keeps them safe in URLs, logs and etcd prefixes alike.
const keyPattern = /^[A-Za-z0-9._:/-]+$/;
const revisionPattern = /^[1-9][0-9]{0,18}$/;

/** Throws `LeaseStoreRejected` unless `key` is a valid key. */
export function checkKey(key: unknown, what = 'key'): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw new LeaseStoreRejected('invalid', `The ${what} must be a non-empty string`);
  if (key.length > leaseStoreLimits.keyLengthMax) {
    throw new LeaseStoreRejected('too-large', `The ${what} "${key.slice(0, 40)}…" is ${key.length} characters long; at most ${leaseStoreLimits.keyLengthMax}`);
  }
  if (!keyPattern.test(key)) throw new LeaseStoreRejected('invalid', `The ${what} ${JSON.stringify(key)} may hold only letters, digits and . _ : / -`);
}

/** Throws `LeaseStoreRejected` unless `prefix` is a valid prefix (the empty prefix lists everything). */
export function checkPrefix(prefix: unknown): asserts prefix is string {
  if (prefix === '') return;
  checkKey(prefix, 'prefix');
}

const encoder = new TextEncoder();

/** The size of `value` in UTF-8 bytes, as both stores count it. */
export function valueBytes(value: string): number {
  return encoder.encode(value).byteLength;
}

/** Throws `LeaseStoreRejected` unless `value` is a string within `valueBytesMax`. */
export function checkValue(key: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw new LeaseStoreRejected('invalid', `The value of "${key}" must be a string`);
  // A UTF-16 code unit is at most 3 UTF-8 bytes, so short strings need no encoding to be checked.
  if (value.length * 3 <= leaseStoreLimits.valueBytesMax) return;
  const bytes = valueBytes(value);
  if (bytes > leaseStoreLimits.valueBytesMax) {
    throw new LeaseStoreRejected('too-large', `The value of "${key}" is ${bytes} bytes; at most ${leaseStoreLimits.valueBytesMax}`);
  }
}

/** Throws `LeaseStoreRejected` unless `ttlMs` is undefined or a whole number of ms in (0, ttlMsMax]. */
export function checkTtl(key: string, ttlMs: unknown): asserts ttlMs is number | undefined {
  if (ttlMs === undefined) return;
  if (typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs <= 0 || ttlMs > leaseStoreLimits.ttlMsMax) {
    throw new LeaseStoreRejected('invalid', `The ttl of "${key}" must be a whole number of ms between 1 and ${leaseStoreLimits.ttlMsMax}, not ${String(ttlMs)}`);
  }
}

/** Throws `LeaseStoreRejected` unless `revision` looks like a revision either store hands out. */
export function checkRevision(key: string, revision: unknown): asserts revision is string {
  if (typeof revision !== 'string' || !revisionPattern.test(revision)) {
    throw new LeaseStoreRejected('invalid', `The revision given for "${key}" must be a decimal integer > 0, not ${JSON.stringify(revision)}`);
  }
}

/** Throws `LeaseStoreRejected` unless `guards` is a short list of valid guards. */
export function checkGuards(guards: unknown): asserts guards is readonly Guard[] | undefined {
  if (guards === undefined) return;
  if (!Array.isArray(guards)) throw new LeaseStoreRejected('invalid', 'The guards must be a list');
  if (guards.length > leaseStoreLimits.guardsMax) {
    throw new LeaseStoreRejected('too-large', `${guards.length} guards given; at most ${leaseStoreLimits.guardsMax}`);
  }
  for (const guard of guards as unknown[]) {
    if (typeof guard !== 'object' || guard === null) throw new LeaseStoreRejected('invalid', 'Each guard must be { key, revision }');
    const { key, revision } = guard as { key?: unknown; revision?: unknown };
    checkKey(key, 'guard key');
    if (revision !== null) checkRevision(key, revision);
  }
}

/**
 * Runs `run` with a signal that aborts after `timeoutMs` or when `signal` aborts. Rejects with
 * `LeaseStoreUnavailable` (naming `what`) on timeout, with the caller's reason on abort; a late
 * answer after either is dropped, which is why `run` must honour the signal it is given.
 */
export function withDeadline<T>(
  what: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  const controller = new AbortController();
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = (settle: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      settle();
    };
    const timer = setTimeout(() => {
      const error = new LeaseStoreUnavailable(`${what}: no answer within ${timeoutMs} ms`);
      controller.abort(error);
      finish(() => reject(error));
    }, timeoutMs);
    const onAbort = (): void => {
      controller.abort(signal?.reason);
      finish(() => reject(signal?.reason));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    run(controller.signal).then(
      (value) => finish(() => resolve(value)),
      (error: unknown) => finish(() => reject(error)),
    );
  });
}
