// The several-machines lease store: etcd, through the `etcd3` client. Same contract as the local
// store (lease-store.test.ts runs one suite on both), mapped onto etcd's primitives:
//   - a revision is the key's mod_revision, so compare-and-set is a transaction comparing it;
//   - a ttl is an etcd lease granted for the write (whole seconds, rounded up; etcd may raise it
//     to its minimum) and attached to the key; expiry is judged by the etcd leader's clock;
//   - ttlRemainingMs of a read comes from the lease's time-to-live query, which etcd floors to
//     whole seconds, so it is a lower bound: safe for a holder deciding when to stop writing.
// Every call has one deadline across all its RPCs; anything that is not a refusal by etcd
// (connection refused, deadline, no leader, the client closed) becomes `LeaseStoreUnavailable`.
import {
  CompareResult,
  CompareTarget,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  Etcd3,
  GRPCInvalidArgumentError,
  GRPCResourceExhastedError,
  GRPCUnauthenticatedError,
  isRecoverableError,
  SortOrder,
  SortTarget,
  type ICompare,
  type IKeyValue,
  type IOptions,
} from 'etcd3';
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
  withDeadline,
  type CasOptions,
  type DeleteOptions,
  type Entry,
  type Guard,
  type LeaseStore,
  type WriteOptions,
} from './lease-store.ts';

/** Options of `createEtcdLeaseStore`. */
export interface EtcdLeaseStoreOptions {
  /** Client URLs of the etcd members, e.g. `http://10.0.0.1:2379`; all http or all https. */
  hosts: string[];
  /** Namespace of this cluster's keys in etcd; ends with `/`, e.g. `parley/main/`. */
  prefix: string;
  /** Per call, across all its RPCs and member retries; default `defaultLeaseStoreTimeoutMs`. */
  timeoutMs?: number;
  /** TLS material when the hosts are https. */
  credentials?: IOptions['credentials'];
  /** etcd user and password when etcd's auth is on. */
  auth?: { username: string; password: string };
}

type EtcdPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
type PolicyRun = <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal) => Promise<T>;

// A member that failed (refused, timed out) is passed over this long while another member looks
// healthy, so a silent member does not eat one call's whole deadline on every other call.
const memberCooldownMs = 5000;
const grpcDeadlineGraceMs = 200;
// Time-to-live queries of a list run in batches: bounded concurrency against etcd.
const ttlQueryBatch = 16;

/** Raised by a member's policy to pass over it; the pool then tries the next member. */
class MemberCoolingDown extends Error {
  constructor(host: string) {
    super(`etcd member ${host} failed recently; trying another`);
    this.name = 'MemberCoolingDown';
  }
}

function recoverable(error: unknown): boolean {
  return error instanceof Error && isRecoverableError(error);
}

/**
 * A cockatiel-compatible policy around `execute` (etcd3 only calls `execute`). Hand-written so that
 * we depend on etcd3's documented options rather than on cockatiel, which it bundles.
 */
function policy(execute: PolicyRun): EtcdPolicy {
  const noEvents = () => ({ dispose() {} });
  // `_altReturn` is a type-level marker cockatiel declares and never reads.
  return { _altReturn: undefined as never, onSuccess: noEvents, onFailure: noEvents, execute };
}

/** The fault handling of one client: retry recoverable errors on other members, skip failed ones. */
function faultHandling(hosts: readonly string[]): NonNullable<IOptions['faultHandling']> {
  const coolingUntil = new Map<string, number>();
  const cooling = (host: string, at: number): boolean => (coolingUntil.get(host) ?? 0) > at;
  const idle = new AbortController().signal;
  return {
    // One attempt per member at most; the call's deadline bounds them together.
    global: policy(async (fn, signal = idle) => {
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await fn({ signal });
        } catch (error) {
          if (attempt >= hosts.length || !(recoverable(error) || error instanceof MemberCoolingDown)) throw error;
        }
      }
    }),
    host: (host) =>
      policy(async (fn, signal = idle) => {
        const at = performance.now();
        if (cooling(host, at) && hosts.some((other) => other !== host && !cooling(other, at))) throw new MemberCoolingDown(host);
        try {
          const value = await fn({ signal });
          coolingUntil.delete(host);
          return value;
        } catch (error) {
          if (recoverable(error)) coolingUntil.set(host, performance.now() + memberCooldownMs);
          throw error;
        }
      }),
  };
}

/** The first key after every key that starts with `prefix` (etcd's range_end for a prefix). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i -= 1) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  // All 0xff: to the end of the keyspace.
  return Buffer.from([0]);
}

/** Maps what the etcd client threw to the store's two typed errors. */
function mapError(error: unknown, what: string): Error {
  if (error instanceof LeaseStoreUnavailable || error instanceof LeaseStoreRejected) return error;
  if (error instanceof EtcdPermissionDeniedError || error instanceof EtcdAuthenticationFailedError || error instanceof GRPCUnauthenticatedError) {
    return new LeaseStoreRejected('unauthorized', `${what}: ${error.message}`);
  }
  if (error instanceof GRPCResourceExhastedError && /larger than max/i.test(error.message)) {
    return new LeaseStoreRejected('too-large', `${what}: the answer is too large; narrow the prefix (${error.message})`);
  }
  if (error instanceof GRPCInvalidArgumentError) {
    const tooLarge = /too large/i.test(error.message);
    return new LeaseStoreRejected(tooLarge ? 'too-large' : 'invalid', `${what}: ${error.message}`);
  }
  const message = error instanceof Error ? error.message : String(error);
  return new LeaseStoreUnavailable(`${what}: ${message}`, { cause: error });
}

/** A `LeaseStore` on an etcd cluster (v3 API, etcd ≥ 3.4). */
export function createEtcdLeaseStore(options: EtcdLeaseStoreOptions): LeaseStore {
  if (options.hosts.length === 0) throw new Error('Cannot use etcd as the lease store: no hosts given');
  for (const host of options.hosts) {
    if (!/^https?:\/\/[^/]+$/.test(host)) throw new Error(`Cannot use "${host}" as an etcd host: write it as http://host:port or https://host:port`);
  }
  checkKey(options.prefix, 'etcd prefix');
  if (!options.prefix.endsWith('/')) throw new Error(`Cannot use "${options.prefix}" as the etcd prefix: it must end with "/", so that it never overlaps another`);
  const prefix = options.prefix;
  const timeoutMs = options.timeoutMs ?? defaultLeaseStoreTimeoutMs;
  const hostList = options.hosts.join(',');
  const client = new Etcd3({
    hosts: options.hosts,
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    ...(options.auth === undefined ? {} : { auth: options.auth }),
    faultHandling: faultHandling(options.hosts),
    grpcOptions: {
      // Reconnect promptly once etcd is back: an agent renews every few hundred ms.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 1000,
      // Room for the largest list we accept; anything larger is refused as too large, not read.
      'grpc.max_receive_message_length': 2 * leaseStoreLimits.listBytesMax,
    },
  });
  let closed = false;

  const fullKey = (key: string): Buffer => Buffer.from(prefix + key, 'utf8');

  /** Runs `run` under the call's deadline, with etcd's errors mapped. */
  const call = <T>(what: string, signal: AbortSignal | undefined, run: (deadline: Date, signal: AbortSignal) => Promise<T>): Promise<T> => {
    const label = `${what} at etcd ${hostList}`;
    if (closed) return Promise.reject(new LeaseStoreUnavailable(`${label}: the client is closed`));
    return withDeadline(label, timeoutMs, signal, async (callSignal) => {
      // gRPC takes its deadline on the wall clock; the timer in withDeadline is the one we trust,
      // so gRPC's comes a little later and only reclaims the call once we have given up on it.
      const deadline = new Date(Date.now() + timeoutMs + grpcDeadlineGraceMs);
      try {
        return await run(deadline, callSignal);
      } catch (error) {
        throw mapError(error, label);
      }
    });
  };

  /** Grants a lease for `ttlMs` rounded up to seconds; undefined without a ttl. */
  const grant = async (ttlMs: number | undefined, deadline: Date): Promise<{ id: string; ttlMs: number } | undefined> => {
    if (ttlMs === undefined) return undefined;
    const granted = await client.leaseClient.leaseGrant({ TTL: Math.ceil(ttlMs / 1000) }, { deadline });
    if (granted.error) throw new LeaseStoreUnavailable(`etcd refused a lease of ${Math.ceil(ttlMs / 1000)} s: ${granted.error}`);
    // etcd may raise a short ttl to its minimum (1.5 × election timeout): report what it granted.
    return { id: granted.ID, ttlMs: Number(granted.TTL) * 1000 };
  };

  /** Milliseconds left on `lease` (floored to seconds by etcd), or 'expired' when it is gone. */
  const remaining = async (lease: string, deadline: Date): Promise<number | 'expired'> => {
    const answer = await client.leaseClient.leaseTimeToLive({ ID: lease }, { deadline });
    const ttl = Number(answer.TTL);
    // -1: the lease is gone, so the key is being deleted with it. 0: under a second left.
    return ttl < 0 ? 'expired' : ttl * 1000;
  };

  const toEntry = (key: string, kv: IKeyValue, ttlRemainingMs: number | undefined): Entry => {
    const entry: Entry = { key, value: kv.value.toString('utf8'), revision: kv.mod_revision };
    if (ttlRemainingMs !== undefined) entry.ttlRemainingMs = ttlRemainingMs;
    return entry;
  };

  const guardCompares = (guards: readonly Guard[] | undefined): ICompare[] =>
    (guards ?? []).map((guard) =>
      guard.revision === null
        ? { key: fullKey(guard.key), target: CompareTarget.Create, result: CompareResult.Equal, create_revision: 0 }
        : { key: fullKey(guard.key), target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: guard.revision },
    );

  /**
   * One compare-and-put transaction. When it fails, the key is read in the same transaction: if it
   * carries the lease this call granted, an earlier attempt of this very call (retried on another
   * member after its answer was lost) wrote it, and the call has won after all.
   */
  const casPut = async (
    key: string,
    value: string,
    compare: ICompare,
    opts: CasOptions,
    deadline: Date,
    signal: AbortSignal,
  ): Promise<Entry | undefined> => {
    const lease = await grant(opts.ttlMs, deadline);
    // Given up on (timeout, abort) while the lease was granted: do not write behind the caller's back.
    signal.throwIfAborted();
    const target = fullKey(key);
    const answer = await client.kv.txn(
      {
        compare: [compare, ...guardCompares(opts.guards)],
        success: [{ request_put: { key: target, value: Buffer.from(value, 'utf8'), lease: lease?.id ?? 0 } }],
        failure: [{ request_range: { key: target } }],
      },
      { deadline },
    );
    if (answer.succeeded) return { key, value, revision: answer.header.revision, ...(lease ? { ttlRemainingMs: lease.ttlMs } : {}) };
    const current = answer.responses[0]?.response_range?.kvs[0];
    if (lease !== undefined && current !== undefined && current.lease === lease.id) return toEntry(key, current, lease.ttlMs);
    // The unused lease is left to expire: revoking it would cost a round trip on the losing path.
    return undefined;
  };

  // Every method is async, so that a refused argument rejects like any other failure, never throws.
  return {
    async get(key, opts) {
      checkKey(key);
      return call(`get "${key}"`, opts?.signal, async (deadline) => {
        const answer = await client.kv.range({ key: fullKey(key) }, { deadline });
        const kv = answer.kvs[0];
        if (kv === undefined) return undefined;
        if (kv.lease === '0') return toEntry(key, kv, undefined);
        const left = await remaining(kv.lease, deadline);
        return left === 'expired' ? undefined : toEntry(key, kv, left);
      });
    },
    async list(listPrefix, opts) {
      checkPrefix(listPrefix);
      return call(`list "${listPrefix}"`, opts?.signal, async (deadline) => {
        const start = fullKey(listPrefix);
        const answer = await client.kv.range(
          { key: start, range_end: prefixEnd(start), limit: leaseStoreLimits.listEntriesMax + 1, sort_order: SortOrder.Ascend, sort_target: SortTarget.Key },
          { deadline },
        );
        const bytes = answer.kvs.reduce((sum, kv) => sum + kv.value.length, 0);
        if (answer.kvs.length > leaseStoreLimits.listEntriesMax || bytes > leaseStoreLimits.listBytesMax) {
          throw new LeaseStoreRejected(
            'too-large',
            `Cannot list "${listPrefix}": more than ${leaseStoreLimits.listEntriesMax} entries or ${leaseStoreLimits.listBytesMax} bytes; narrow the prefix`,
          );
        }
        const leases = [...new Set(answer.kvs.map((kv) => kv.lease).filter((lease) => lease !== '0'))];
        const left = new Map<string, number | 'expired'>();
        for (let i = 0; i < leases.length; i += ttlQueryBatch) {
          const batch = leases.slice(i, i + ttlQueryBatch);
          const answers = await Promise.all(batch.map((lease) => remaining(lease, deadline)));
          batch.forEach((lease, j) => left.set(lease, answers[j]!));
        }
        const entries: Entry[] = [];
        for (const kv of answer.kvs) {
          const ttl = kv.lease === '0' ? undefined : left.get(kv.lease);
          if (ttl === 'expired') continue;
          entries.push(toEntry(kv.key.toString('utf8').slice(prefix.length), kv, ttl));
        }
        return entries;
      });
    },
    async create(key, value, opts: CasOptions = {}) {
      checkKey(key);
      checkValue(key, value);
      checkTtl(key, opts.ttlMs);
      checkGuards(opts.guards);
      return call(`create "${key}"`, opts.signal, (deadline, signal) =>
        casPut(key, value, { key: fullKey(key), target: CompareTarget.Create, result: CompareResult.Equal, create_revision: 0 }, opts, deadline, signal),
      );
    },
    async update(key, value, revision, opts: CasOptions = {}) {
      checkKey(key);
      checkValue(key, value);
      checkRevision(key, revision);
      checkTtl(key, opts.ttlMs);
      checkGuards(opts.guards);
      return call(`update "${key}"`, opts.signal, (deadline, signal) =>
        casPut(key, value, { key: fullKey(key), target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: revision }, opts, deadline, signal),
      );
    },
    async put(key, value, opts: WriteOptions = {}) {
      checkKey(key);
      checkValue(key, value);
      checkTtl(key, opts.ttlMs);
      return call(`put "${key}"`, opts.signal, async (deadline, signal) => {
        const lease = await grant(opts.ttlMs, deadline);
        signal.throwIfAborted();
        const answer = await client.kv.put({ key: fullKey(key), value: Buffer.from(value, 'utf8'), lease: lease?.id ?? 0 }, { deadline });
        return { key, value, revision: answer.header.revision, ...(lease ? { ttlRemainingMs: lease.ttlMs } : {}) };
      });
    },
    async delete(key, opts: DeleteOptions = {}) {
      checkKey(key);
      const { revision } = opts;
      if (revision !== undefined) checkRevision(key, revision);
      return call(`delete "${key}"`, opts.signal, async (deadline) => {
        if (revision === undefined) {
          const answer = await client.kv.deleteRange({ key: fullKey(key) }, { deadline });
          return Number(answer.deleted) > 0;
        }
        const answer = await client.kv.txn(
          {
            compare: [{ key: fullKey(key), target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: revision }],
            success: [{ request_delete_range: { key: fullKey(key) } }],
          },
          { deadline },
        );
        return answer.succeeded && Number(answer.responses[0]?.response_delete_range?.deleted ?? 0) > 0;
      });
    },
    async close() {
      closed = true;
      client.close();
    },
  };
}
