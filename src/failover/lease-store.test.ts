// Proves the lease store contract (lease-store.ts) on both implementations with one suite: the
// local store served over HTTP, and etcd, started here as a real server. Expiry is awaited as an
// event with a deadline, never timed; every server and process started here is stopped in `after`.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../postgres/postgres.ts';
import { createEtcdLeaseStore } from './lease-etcd.ts';
import { createLocalLeaseClient, generateLeaseToken, startLocalLeaseServer, type LocalLeaseServer } from './lease-local.ts';
import { isLeaseStoreUnavailable, LeaseStoreRejected, leaseStoreLimits, type Entry, type LeaseStore } from './lease-store.ts';

/** What the shared suite needs from one implementation. */
interface Harness {
  /** A ttl short enough to wait out here; the store may round it up (etcd: whole seconds). */
  shortTtlMs: number;
  /** A new client on the live store (closed by the suite). */
  open(): LeaseStore;
  /** A client, with a short timeout, whose store address refuses connections. */
  openRefused(timeoutMs: number): Promise<LeaseStore>;
  /** A client, with a short timeout, whose store accepts connections and never answers. */
  openSilent(timeoutMs: number): Promise<LeaseStore>;
  /** A client with a short timeout on the live store, for `interrupt`. */
  openShort(timeoutMs: number): LeaseStore;
  /** Makes the live store unreachable; the returned function brings it back. */
  interrupt(): Promise<() => Promise<void>>;
}

const shortTimeoutMs = 500;
const expiryWaitMs = 10_000;
const testTimeoutMs = 20_000;

/** Polls `probe` until it returns something other than undefined/false, or fails after `withinMs`. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, withinMs = expiryWaitMs): Promise<T> {
  const deadline = performance.now() + withinMs;
  for (;;) {
    const result = await probe();
    if (result !== undefined && result !== false) return result;
    if (performance.now() > deadline) throw new Error(`Gave up after ${withinMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

function isRejected(reason: LeaseStoreRejected['reason']) {
  return (error: unknown): boolean => error instanceof LeaseStoreRejected && error.reason === reason;
}

/** A TCP server that accepts connections and never says a word: a hung store. */
async function startSilentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The suite both implementations must pass. `harness()` is ready once the describe's `before` ran. */
function contractTests(harness: () => Harness): void {
  const opened: LeaseStore[] = [];
  let namespaceCount = 0;
  const open = (): LeaseStore => {
    const store = harness().open();
    opened.push(store);
    return store;
  };
  const track = (store: LeaseStore): LeaseStore => {
    opened.push(store);
    return store;
  };
  /** A key prefix of its own for each test, so that tests never see each other's keys. */
  const namespace = (): string => `t${++namespaceCount}/`;

  after(async () => {
    await Promise.all(opened.map((store) => store.close()));
  });

  test('create writes only when the key is absent; a second create sees the first holder', { timeout: testTimeoutMs }, async () => {
    // Proves create-if-absent: the first create wins, the second gets undefined, the value stays.
    const store = open();
    const key = `${namespace()}leader`;
    const first = await store.create(key, 'node1', {});
    assert.ok(first);
    assert.equal(first.key, key);
    assert.equal(first.value, 'node1');
    assert.match(first.revision, /^[1-9][0-9]*$/);
    assert.equal(first.ttlRemainingMs, undefined);
    assert.equal(await store.create(key, 'node2', {}), undefined);
    assert.deepEqual(await store.get(key), first);
    assert.equal(await store.get(`${key}-absent`), undefined);
  });

  test('of ten concurrent creates of one key from several clients, exactly one wins', { timeout: testTimeoutMs }, async () => {
    // Proves create is atomic: racing candidates cannot both acquire a free lease.
    const clients = [open(), open(), open()];
    const key = `${namespace()}leader`;
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => clients[i % clients.length]!.create(key, `node${i}`, { ttlMs: 60_000 })),
    );
    const winners = results.filter((entry): entry is Entry => entry !== undefined);
    assert.equal(winners.length, 1);
    assert.equal((await clients[0]!.get(key))?.value, winners[0]!.value);
  });

  test('of ten concurrent updates from one revision, exactly one wins and the others see the CAS lost', { timeout: testTimeoutMs }, async () => {
    // Proves compare-and-set: one revision can be replaced once; losers get undefined, not an error.
    const clients = [open(), open(), open()];
    const key = `${namespace()}leader`;
    const base = await clients[0]!.create(key, 'v0', {});
    assert.ok(base);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => clients[i % clients.length]!.update(key, `v${i + 1}`, base.revision, { ttlMs: 60_000 })),
    );
    const winners = results.filter((entry): entry is Entry => entry !== undefined);
    assert.equal(winners.length, 1);
    const now = await clients[1]!.get(key);
    assert.equal(now?.value, winners[0]!.value);
    assert.equal(now?.revision, winners[0]!.revision);
    assert.notEqual(now?.revision, base.revision);
  });

  test('a superseded revision can neither update nor delete; a missing key cannot be updated', { timeout: testTimeoutMs }, async () => {
    // Proves a holder that fell behind (paused, partitioned) cannot overwrite or free a newer term.
    const store = open();
    const key = `${namespace()}leader`;
    const first = await store.create(key, 'a', {});
    assert.ok(first);
    const second = await store.update(key, 'b', first.revision, {});
    assert.ok(second);
    assert.notEqual(second.revision, first.revision);
    assert.equal(await store.update(key, 'stale', first.revision, {}), undefined);
    assert.equal(await store.delete(key, { revision: first.revision }), false);
    assert.equal((await store.get(key))?.value, 'b');
    assert.equal(await store.update(`${key}-absent`, 'x', second.revision, {}), undefined);
  });

  test('a key with a ttl expires by the store clock: it reads as absent and another can create it', { timeout: testTimeoutMs }, async () => {
    // Proves expiry: a holder that stops renewing loses the key, and a waiter then acquires it.
    const { shortTtlMs } = harness();
    const [holder, waiter] = [open(), open()];
    const ns = namespace();
    const key = `${ns}leader`;
    const held = await holder.create(key, 'node1', { ttlMs: shortTtlMs });
    assert.ok(held);
    // The store may round a ttl up (etcd: whole seconds), never down.
    assert.ok(held.ttlRemainingMs !== undefined && held.ttlRemainingMs >= shortTtlMs, `ttlRemainingMs ${held.ttlRemainingMs}`);
    assert.equal(await waiter.create(key, 'node2', { ttlMs: shortTtlMs }), undefined);
    const read = await waiter.get(key);
    assert.ok(read?.ttlRemainingMs !== undefined && read.ttlRemainingMs <= held.ttlRemainingMs, `ttlRemainingMs ${read?.ttlRemainingMs}`);

    await waitFor('the key to expire', async () => (await waiter.get(key)) === undefined);
    assert.deepEqual(await waiter.list(ns), []);
    const taken = await waitFor('the waiter to acquire the expired key', () => waiter.create(key, 'node2', { ttlMs: 60_000 }));
    assert.equal(taken.value, 'node2');
    assert.equal(await holder.update(key, 'node1', held.revision, { ttlMs: shortTtlMs }), undefined);
  });

  test('an update re-arms the ttl: the updated key outlives a sibling written with the same short ttl after it', { timeout: testTimeoutMs }, async () => {
    // Proves renewal: a holder that renews keeps its key past the ttl it was created with.
    const { shortTtlMs } = harness();
    const store = open();
    const ns = namespace();
    const created = await store.create(`${ns}leader`, 'term1', { ttlMs: shortTtlMs });
    assert.ok(created);
    // Written after the leader, with the same ttl: it cannot expire before the leader's first ttl.
    assert.ok(await store.put(`${ns}sibling`, 'x', { ttlMs: shortTtlMs }));
    const renewed = await store.update(`${ns}leader`, 'term1-renewed', created.revision, { ttlMs: 60_000 });
    assert.ok(renewed?.ttlRemainingMs !== undefined && renewed.ttlRemainingMs >= 60_000);

    await waitFor('the sibling to expire', async () => (await store.get(`${ns}sibling`)) === undefined);
    const leader = await store.get(`${ns}leader`);
    assert.equal(leader?.value, 'term1-renewed');
    assert.equal(leader?.revision, renewed.revision);
    // An update without ttlMs leaves the key without expiry.
    const persistent = await store.update(`${ns}leader`, 'term1-pinned', renewed.revision, {});
    assert.equal(persistent?.ttlRemainingMs, undefined);
    assert.equal((await store.get(`${ns}leader`))?.ttlRemainingMs, undefined);
  });

  test('delete refuses a wrong revision, takes the right one, and reports a missing key as not deleted', { timeout: testTimeoutMs }, async () => {
    // Proves a conditional release: only the holder of the current term can end it early.
    const store = open();
    const key = `${namespace()}leader`;
    const first = await store.create(key, 'a', { ttlMs: 60_000 });
    assert.ok(first);
    const other = await store.put(`${key}-other`, 'x', {});
    assert.equal(await store.delete(key, { revision: other.revision }), false);
    assert.ok(await store.get(key));
    assert.equal(await store.delete(key, { revision: first.revision }), true);
    assert.equal(await store.get(key), undefined);
    assert.equal(await store.delete(key, { revision: first.revision }), false);
    assert.equal(await store.delete(key), false);
    // Freed early, the key is creatable at once.
    assert.ok(await store.create(key, 'b', {}));
  });

  test('put overwrites whatever is there with a new revision; delete without a revision removes it', { timeout: testTimeoutMs }, async () => {
    // Proves the unconditional writes a member uses to publish its own state.
    const store = open();
    const key = `${namespace()}members/node1`;
    const first = await store.put(key, '{"lsn":1}', { ttlMs: 60_000 });
    assert.ok(first.ttlRemainingMs !== undefined && first.ttlRemainingMs >= 60_000);
    const second = await store.put(key, '{"lsn":2}', {});
    assert.notEqual(second.revision, first.revision);
    assert.equal(second.ttlRemainingMs, undefined);
    assert.deepEqual(await store.get(key), second);
    assert.equal(await store.delete(key), true);
    assert.equal(await store.get(key), undefined);
  });

  test('list returns exactly the live keys under a prefix, sorted by key', { timeout: testTimeoutMs }, async () => {
    // Proves list by prefix: an agent reads every member's state and nothing else.
    const store = open();
    const ns = namespace();
    const written = new Map<string, Entry>();
    for (const key of ['members/b', 'members/a', 'membersx/c', 'leader']) written.set(key, await store.put(`${ns}${key}`, key, {}));
    const members = await store.list(`${ns}members/`);
    assert.deepEqual(members, [written.get('members/a'), written.get('members/b')]);
    assert.deepEqual(
      (await store.list(`${ns}members`)).map((entry) => entry.key),
      [`${ns}members/a`, `${ns}members/b`, `${ns}membersx/c`],
    );
    assert.equal((await store.list(ns)).length, 4);
    assert.deepEqual(await store.list(`${ns}nothing/`), []);
  });

  test('guards make a write depend on other keys: a stale or wrong guard refuses it', { timeout: testTimeoutMs }, async () => {
    // Proves the leader can be taken only while maintenance is as the candidate read it (invariant 6).
    const store = open();
    const ns = namespace();
    const maintenance = await store.put(`${ns}maintenance`, 'off', {});
    const leader = `${ns}leader`;
    assert.equal(await store.create(leader, 'node1', { guards: [{ key: `${ns}maintenance`, revision: null }] }), undefined);
    const taken = await store.create(leader, 'node1', { ttlMs: 60_000, guards: [{ key: `${ns}maintenance`, revision: maintenance.revision }] });
    assert.ok(taken);
    const changed = await store.put(`${ns}maintenance`, 'on', {});
    const refused = await store.update(leader, 'node1', taken.revision, { guards: [{ key: `${ns}maintenance`, revision: maintenance.revision }] });
    assert.equal(refused, undefined);
    assert.equal((await store.get(leader))?.revision, taken.revision);
    assert.ok(await store.update(leader, 'node1', taken.revision, { guards: [{ key: `${ns}maintenance`, revision: changed.revision }] }));
    assert.ok(await store.create(`${ns}other`, 'x', { guards: [{ key: `${ns}absent`, revision: null }] }));
  });

  test('keys, values, ttls and revisions outside the limits are refused as LeaseStoreRejected', { timeout: testTimeoutMs }, async () => {
    // Proves a bad call is told apart from an unreachable store: it rejects with LeaseStoreRejected.
    const store = open();
    const ns = namespace();
    await assert.rejects(store.get('x'.repeat(leaseStoreLimits.keyLengthMax + 1)), isRejected('too-large'));
    await assert.rejects(store.get(`${ns}bad key`), isRejected('invalid'));
    await assert.rejects(store.put(`${ns}big`, 'x'.repeat(leaseStoreLimits.valueBytesMax + 1), {}), isRejected('too-large'));
    // Multi-byte characters count as their UTF-8 bytes.
    await assert.rejects(store.put(`${ns}big`, 'é'.repeat(leaseStoreLimits.valueBytesMax / 2 + 1), {}), isRejected('too-large'));
    await assert.rejects(store.put(`${ns}ttl`, 'x', { ttlMs: 0 }), isRejected('invalid'));
    await assert.rejects(store.put(`${ns}ttl`, 'x', { ttlMs: 1.5 }), isRejected('invalid'));
    await assert.rejects(store.update(`${ns}rev`, 'x', 'abc', {}), isRejected('invalid'));
    await assert.rejects(store.delete(`${ns}rev`, { revision: '-1' }), isRejected('invalid'));
    const guards = Array.from({ length: leaseStoreLimits.guardsMax + 1 }, (_, i) => ({ key: `${ns}g${i}`, revision: null }));
    await assert.rejects(store.create(`${ns}guarded`, 'x', { guards }), isRejected('too-large'));
    const largest = await store.put(`${ns}big`, 'x'.repeat(leaseStoreLimits.valueBytesMax), {});
    assert.equal((await store.get(`${ns}big`))?.value.length, largest.value.length);
  });

  test('a call abandoned through its AbortSignal rejects with the signal reason', { timeout: testTimeoutMs }, async () => {
    // Proves cancellation: an agent shutting down is not held by a store call.
    const store = open();
    const reason = new Error('agent stopping');
    await assert.rejects(store.get(`${namespace()}k`, { signal: AbortSignal.abort(reason) }), (error) => error === reason);
  });

  test('a store address that refuses connections rejects every call with LeaseStoreUnavailable', { timeout: testTimeoutMs }, async () => {
    // Proves "unreachable" is typed and distinct from "CAS lost" for every operation.
    const store = track(await harness().openRefused(shortTimeoutMs));
    const key = `${namespace()}leader`;
    await assert.rejects(store.get(key), isLeaseStoreUnavailable);
    await assert.rejects(store.list(key), isLeaseStoreUnavailable);
    await assert.rejects(store.create(key, 'x', { ttlMs: 5000 }), isLeaseStoreUnavailable);
    await assert.rejects(store.update(key, 'x', '1', { ttlMs: 5000 }), isLeaseStoreUnavailable);
    await assert.rejects(store.put(key, 'x', {}), isLeaseStoreUnavailable);
    await assert.rejects(store.delete(key, { revision: '1' }), isLeaseStoreUnavailable);
  });

  test('a store that accepts connections and never answers rejects with LeaseStoreUnavailable at the timeout', { timeout: testTimeoutMs }, async () => {
    // Proves every call is bounded by the client's timeout: the rejection comes from its deadline.
    const store = track(await harness().openSilent(shortTimeoutMs));
    const key = `${namespace()}leader`;
    const byDeadline = (error: unknown): boolean => isLeaseStoreUnavailable(error) && error.message.includes(`no answer within ${shortTimeoutMs} ms`);
    await assert.rejects(store.get(key), byDeadline);
    await assert.rejects(store.update(key, 'x', '1', { ttlMs: 5000 }), byDeadline);
  });

  test('while the store is down calls reject with LeaseStoreUnavailable; once it is back the same client works', { timeout: testTimeoutMs }, async () => {
    // Proves an outage is reported, not hidden, and that the client recovers without being reopened.
    const store = harness().openShort(shortTimeoutMs);
    track(store);
    const key = `${namespace()}leader`;
    assert.ok(await store.put(key, 'before', {}));
    const restore = await harness().interrupt();
    try {
      await assert.rejects(store.get(key), isLeaseStoreUnavailable);
      await assert.rejects(store.put(key, 'during', {}), isLeaseStoreUnavailable);
    } finally {
      await restore();
    }
    const reached = await waitFor('the client to reach the store again', async () => {
      try {
        return { entry: await store.get(key) };
      } catch (error) {
        if (isLeaseStoreUnavailable(error)) return undefined;
        throw error;
      }
    });
    // The put that timed out may still land (etcd applies what sat in its socket buffer when it
    // resumes), so the outcome is read back, as an agent would, before a compare-and-set on it.
    // The local store comes back empty, as after a restart of the supervisor.
    assert.ok(reached.entry === undefined || ['before', 'during'].includes(reached.entry.value), reached.entry?.value);
    await waitFor('a compare-and-set on what was read back to win', async () => {
      const latest = await store.get(key);
      return latest === undefined ? store.create(key, 'after', {}) : store.update(key, 'after', latest.revision, {});
    });
    assert.equal((await store.get(key))?.value, 'after');
  });
}

describe('local lease store', () => {
  const token = generateLeaseToken();
  let server: LocalLeaseServer | undefined;
  let silent: Awaited<ReturnType<typeof startSilentServer>> | undefined;
  const extra: LeaseStore[] = [];

  before(async () => {
    server = await startLocalLeaseServer({ token, port: 0 });
    silent = await startSilentServer();
  });
  after(async () => {
    await Promise.all(extra.map((store) => store.close()));
    await server?.close();
    await silent?.close();
  });

  contractTests(() => {
    const live = (): LocalLeaseServer => {
      assert.ok(server, 'the local lease server did not start');
      return server;
    };
    return {
      shortTtlMs: 300,
      open: () => createLocalLeaseClient({ url: live().url, token }),
      openShort: (timeoutMs) => createLocalLeaseClient({ url: live().url, token, timeoutMs }),
      openRefused: async (timeoutMs) => createLocalLeaseClient({ url: `http://127.0.0.1:${await freePort()}`, token, timeoutMs }),
      openSilent: async (timeoutMs) => {
        assert.ok(silent);
        return createLocalLeaseClient({ url: `http://127.0.0.1:${silent.port}`, token, timeoutMs });
      },
      interrupt: async () => {
        const { port } = live();
        await live().close();
        server = undefined;
        // The store restarts empty on the same port, as after a restart of the supervisor.
        return async () => {
          server = await startLocalLeaseServer({ token, port });
        };
      },
    };
  });

  test('the local server refuses a missing or wrong bearer token', { timeout: testTimeoutMs }, async () => {
    // Proves the shared secret guards the store: another local user cannot take the lease.
    assert.ok(server);
    const intruder = createLocalLeaseClient({ url: server.url, token: generateLeaseToken() });
    extra.push(intruder);
    await assert.rejects(intruder.create('leader', 'evil', {}), isRejected('unauthorized'));
    const status = await rawPost(server.url, '/v1/get', '{"key":"leader"}', {});
    assert.equal(status, 401);
  });

  test('the local server answers an oversized body with 413 without reading it all', { timeout: testTimeoutMs }, async () => {
    // Proves the request size is bounded on the server, whatever a client sends.
    assert.ok(server);
    const body = JSON.stringify({ key: 'big', value: 'x'.repeat(2_000_000) });
    assert.equal(await rawPost(server.url, '/v1/put', body, { authorization: `Bearer ${token}` }), 413);
  });

  test('the local server refuses a new key past its key limit as full, and takes it once there is room', { timeout: testTimeoutMs }, async () => {
    // Proves the number of keys is bounded, and that the refusal is typed.
    const small = await startLocalLeaseServer({ token, keysMax: 3 });
    const store = createLocalLeaseClient({ url: small.url, token });
    try {
      for (const key of ['a', 'b', 'c']) await store.put(key, 'x', {});
      await assert.rejects(store.put('d', 'x', {}), isRejected('full'));
      await store.put('a', 'y', {});
      assert.equal(await store.delete('b'), true);
      assert.ok(await store.create('d', 'x', {}));
    } finally {
      await store.close();
      await small.close();
    }
  });

  test('the local server refuses a list longer than the limit instead of truncating it', { timeout: testTimeoutMs }, async () => {
    // Proves list is bounded and says so: a caller never mistakes a partial list for the whole.
    assert.ok(server);
    const store = createLocalLeaseClient({ url: server.url, token });
    extra.push(store);
    const keys = Array.from({ length: leaseStoreLimits.listEntriesMax + 1 }, (_, i) => `many/${i}`);
    for (let i = 0; i < keys.length; i += 100) await Promise.all(keys.slice(i, i + 100).map((key) => store.put(key, 'x', {})));
    await assert.rejects(store.list('many/'), isRejected('too-large'));
    assert.equal(await store.delete('many/0'), true);
    assert.equal((await store.list('many/')).length, leaseStoreLimits.listEntriesMax);
  });

  test('revisions handed out after a restart of the local server are all greater than before it', { timeout: testTimeoutMs }, async () => {
    // Proves a holder's stale revision cannot match a stranger's entry after the supervisor restarts.
    const first = await startLocalLeaseServer({ token });
    const before = createLocalLeaseClient({ url: first.url, token });
    const old = await before.put('leader', 'node1', {}).finally(async () => {
      await before.close();
      await first.close();
    });
    const second = await startLocalLeaseServer({ token });
    const afterRestart = createLocalLeaseClient({ url: second.url, token });
    try {
      const fresh = await afterRestart.put('leader', 'node2', {});
      assert.ok(BigInt(fresh.revision) > BigInt(old.revision), `${fresh.revision} after ${old.revision}`);
      assert.equal(await afterRestart.update('leader', 'node1', old.revision, {}), undefined);
    } finally {
      await afterRestart.close();
      await second.close();
    }
  });

  test('a restarted local server lets nobody create a key until leases from before the restart have run out', { timeout: testTimeoutMs }, async () => {
    // Proves a supervisor restart cannot hand the leader lease to a second node while the first may still hold it.
    const restarted = await startLocalLeaseServer({ token, holdCreatesMs: 300 });
    const store = createLocalLeaseClient({ url: restarted.url, token });
    try {
      assert.equal(await store.create('leader', 'node2', { ttlMs: 3000 }), undefined);
      assert.equal(await store.get('leader'), undefined);
      const taken = await waitFor('creates to be allowed again', () => store.create('leader', 'node2', { ttlMs: 3000 }));
      assert.equal(taken.value, 'node2');
    } finally {
      await store.close();
      await restarted.close();
    }
  });

  test('the local server and client refuse anything but loopback', { timeout: testTimeoutMs }, async () => {
    // Proves the clear-text token never leaves the machine.
    await assert.rejects(startLocalLeaseServer({ token, host: '0.0.0.0' }), /loopback only/);
    assert.throws(() => createLocalLeaseClient({ url: 'http://10.0.0.1:4000', token }), /loopback only/);
  });
});

/** POSTs `body` to the server without the client, for what the client would never send; the status. */
function rawPost(base: string, path: string, body: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, base), { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, signal: AbortSignal.timeout(5000) }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    // The server may close the connection before the whole body is sent; the status came first.
    req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'EPIPE' || error.code === 'ECONNRESET' ? undefined : reject(error)));
    req.end(body);
  });
}

/** The path of `name` on PATH, or undefined: what `which` would say. */
function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** True when every thread of process `pid` is stopped (state T in /proc, Linux). */
function isStopped(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  const tasks = readdirSync(`/proc/${pid}/task`);
  // The state is the field after the parenthesised command name, which may itself hold spaces.
  return tasks.every((task) => /\) T /.test(readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8')));
}

/** A real single-member etcd on free ports of 127.0.0.1, in a fresh data directory. */
interface EtcdProcess {
  url: string;
  child: ChildProcess;
  dir: string;
  /** SIGKILL (also when stopped by SIGSTOP), wait for the exit, remove the directory. */
  stop(): Promise<void>;
}

const liveEtcds = new Set<EtcdProcess>();
let etcdExitHookInstalled = false;

async function startEtcd(): Promise<EtcdProcess> {
  const bin = which('etcd');
  if (bin === undefined) {
    throw new Error(
      'The etcd lease store tests need a real etcd, and `etcd` is not on PATH. Install the Debian package etcd-server ' +
        '(`apt-get install -y etcd-server`, binary /usr/bin/etcd), as .ci/run does.',
    );
  }
  if (!etcdExitHookInstalled) {
    etcdExitHookInstalled = true;
    // Last resort when the runner exits without `after`: no etcd outlives the tests.
    process.on('exit', () => {
      for (const etcd of liveEtcds) {
        etcd.child.kill('SIGKILL');
        rmSync(etcd.dir, { recursive: true, force: true });
      }
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'parley-etcd-'));
  const clientPort = await freePort();
  const peerPort = await freePort();
  const url = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const logFile = join(dir, 'etcd.log');
  const log = openSync(logFile, 'w');
  const child = spawn(
    bin,
    [
      '--name', 't',
      '--data-dir', join(dir, 'data'),
      '--listen-client-urls', url,
      '--advertise-client-urls', url,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `t=${peer}`,
      // A short election timeout starts the member faster and lowers etcd's minimum lease ttl to 1 s.
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
    ],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const etcd: EtcdProcess = {
    url,
    child,
    dir,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await Promise.race([exited, sleep(5000)]);
      liveEtcds.delete(etcd);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  liveEtcds.add(etcd);
  try {
    await waitFor(
      `etcd to answer on ${url}`,
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`etcd exited at start:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
        try {
          const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(500) });
          return res.ok && ((await res.json()) as { health?: string }).health === 'true';
        } catch {
          return false;
        }
      },
      15_000,
    );
  } catch (error) {
    await etcd.stop();
    throw error;
  }
  return etcd;
}

describe('etcd lease store', () => {
  let etcd: EtcdProcess | undefined;
  let silent: Awaited<ReturnType<typeof startSilentServer>> | undefined;
  const extra: LeaseStore[] = [];
  // Each run in a prefix of its own, as two Parley clusters sharing one etcd would be.
  const prefix = `parley-test-${process.pid}/`;

  before(async () => {
    etcd = await startEtcd();
    silent = await startSilentServer();
  });
  after(async () => {
    await Promise.all(extra.map((store) => store.close()));
    await etcd?.stop();
    await silent?.close();
  });

  const live = (): EtcdProcess => {
    assert.ok(etcd, 'etcd did not start');
    return etcd;
  };

  contractTests(() => ({
    shortTtlMs: 1000,
    open: () => createEtcdLeaseStore({ hosts: [live().url], prefix, timeoutMs: 5000 }),
    openShort: (timeoutMs) => createEtcdLeaseStore({ hosts: [live().url], prefix, timeoutMs }),
    openRefused: async (timeoutMs) => createEtcdLeaseStore({ hosts: [`http://127.0.0.1:${await freePort()}`], prefix, timeoutMs }),
    openSilent: async (timeoutMs) => {
      assert.ok(silent);
      return createEtcdLeaseStore({ hosts: [`http://127.0.0.1:${silent.port}`], prefix, timeoutMs });
    },
    interrupt: async () => {
      // A frozen etcd (SIGSTOP) keeps its port open and answers nothing: the hardest outage to see.
      const { child } = live();
      child.kill('SIGSTOP');
      // The signal is delivered asynchronously: wait until every thread of etcd is stopped.
      await waitFor('etcd to stop', async () => isStopped(child.pid), 5000);
      return async () => {
        child.kill('SIGCONT');
      };
    },
  }));

  test('etcd rounds a ttl up to whole seconds, and the entry reports the ttl etcd granted', { timeout: testTimeoutMs }, async () => {
    // Proves the holder learns the real expiry, not the one it asked for.
    const store = createEtcdLeaseStore({ hosts: [live().url], prefix, timeoutMs: 5000 });
    extra.push(store);
    const entry = await store.put('rounding/leader', 'x', { ttlMs: 1500 });
    assert.equal(entry.ttlRemainingMs, 2000);
  });

  test('two prefixes on one etcd never see each other’s keys', { timeout: testTimeoutMs }, async () => {
    // Proves the prefix isolates clusters sharing an etcd.
    const one = createEtcdLeaseStore({ hosts: [live().url], prefix: `${prefix}one/`, timeoutMs: 5000 });
    const two = createEtcdLeaseStore({ hosts: [live().url], prefix: `${prefix}one-two/`, timeoutMs: 5000 });
    extra.push(one, two);
    await one.put('leader', 'one', {});
    assert.equal(await two.get('leader'), undefined);
    assert.ok(await two.create('leader', 'two', {}));
    assert.deepEqual((await one.list('')).map((entry) => entry.value), ['one']);
    assert.deepEqual((await two.list('')).map((entry) => entry.value), ['two']);
  });

  test('with one member refusing connections, every call is answered by the member that is up', { timeout: testTimeoutMs }, async () => {
    // Proves a dead etcd member does not make the store unavailable to the agents.
    const dead = `http://127.0.0.1:${await freePort()}`;
    const store = createEtcdLeaseStore({ hosts: [dead, live().url], prefix, timeoutMs: 5000 });
    extra.push(store);
    const written = await store.put('members/one-dead', 'x', {});
    for (let i = 0; i < 10; i += 1) assert.equal((await store.get('members/one-dead'))?.revision, written.revision);
  });
});
