// Proves issue 6 on a real three-node cluster under `parley up`: with the primary's PostgreSQL
// frozen (SIGSTOP of every process of it) during maintenance, sends are answered at once — 201 or
// 503 problem+json with Retry-After — while history reads keep answering 200 from the standbys,
// /readyz says degraded and WebSocket clients are told; after the thaw all is normal and nothing
// acknowledged is lost. A standby slowed by recovery_min_apply_delay leaves the read pool, and a
// client still reads its own writes at once.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { cleanUp, cli, sleep, waitUntil, withParleyDatabase, type Up } from './harness.ts';
import { assertExactlyOnce, clusterHealthy, clusterStatus, startCluster } from './cluster.ts';
import { startWriter } from './writer.ts';

after(cleanUp);

async function call(base: string, path: string, init: { method?: string; body?: unknown; token?: string } = {}) {
  const started = Date.now();
  const response = await fetch(`${base}${path}`, {
    method: init.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  return {
    status: response.status,
    type: response.headers.get('content-type') ?? '',
    retryAfter: response.headers.get('retry-after'),
    body: text ? (JSON.parse(text) as any) : undefined,
    tookMs: Date.now() - started,
  };
}

/** The postmaster `pid` and every process it started (backends, WAL sender, checkpointer, ...). */
function processesOf(pid: number): number[] {
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((n) => n > 0);
  return [pid, ...children];
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone meanwhile
    }
  }
}

describe('app servers route around a sick database', () => {
  let dir = '';
  let url = '';
  let up: Up;
  let token = '';
  let conversationId = '';

  before(async () => {
    ({ dir, url, up } = await startCluster());
    void up;
    const username = `reader${randomUUID().slice(0, 8)}`;
    assert.equal((await call(url, '/v1/accounts', { method: 'POST', body: { username, password: 'long-enough' } })).status, 201);
    token = (await call(url, '/v1/sessions', { method: 'POST', body: { username, password: 'long-enough' } })).body.token;
    conversationId = (await call(url, '/v1/conversations', { method: 'POST', token, body: { kind: 'group', members: [username], title: 'reads' } })).body.id;
    // The app server's read pool fills once it has probed the standbys.
    await waitUntil('two standbys in the read pool', async () => /read pool: node\d, node\d/.test((await call(url, '/readyz')).body?.detail ?? ''), 30_000);
  });

  test('primary frozen during maintenance: sends answered within 3 s, history reads 200, /readyz degraded, sockets told; thaw: all normal, nothing lost', async () => {
    const writer = await startWriter(url);
    await writer.waitForAcks(20, 30_000);
    const socket = new WebSocket(`${url.replace('http', 'ws')}/v1/stream?token=${token}`);
    const statuses: string[] = [];
    socket.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { type: string; state?: string };
      if (frame.type === 'status') statuses.push(frame.state!);
    });
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    assert.equal((await cli(['maintenance', 'start', '--reason', 'frozen primary test', '--dir', dir])).code, 0);
    const s = await clusterStatus(dir);
    const frozen = processesOf(s.nodes.find((n) => n.name === s.primary)!.pid!);
    signalAll(frozen, 'SIGSTOP');
    try {
      await waitUntil('/readyz says degraded', async () => (await call(url, '/readyz')).body?.state === 'degraded', 10_000);
      const ready = await call(url, '/readyz');
      assert.equal(ready.status, 200);
      assert.match(ready.body.detail, /not answering/);
      await waitUntil('the socket is told: degraded', () => statuses.includes('degraded'), 5000);
      const sends: Array<{ status: number; tookMs: number }> = [];
      const reads: Array<{ status: number; tookMs: number }> = [];
      for (let i = 0; i < 10; i++) {
        const sent = await call(url, `/v1/conversations/${conversationId}/messages`, { method: 'POST', token, body: { clientMessageId: randomUUID(), body: `frozen ${i}` } });
        sends.push({ status: sent.status, tookMs: sent.tookMs });
        assert.ok(sent.status === 201 || sent.status === 503, `send answered ${sent.status}: ${JSON.stringify(sent.body)}`);
        if (sent.status === 503) {
          assert.match(sent.type, /application\/problem\+json/);
          assert.equal(sent.body.code, 'storage_unavailable');
          assert.ok(Number(sent.retryAfter) > 0, `Retry-After: ${sent.retryAfter}`);
        }
        assert.ok(sent.tookMs <= 3000, `send answered after ${sent.tookMs} ms`);
        const read = await call(url, `/v1/conversations/${conversationId}/messages?limit=50`, { token });
        reads.push({ status: read.status, tookMs: read.tookMs });
        assert.equal(read.status, 200, `history read answered ${read.status}: ${JSON.stringify(read.body)}`);
        const list = await call(url, '/v1/conversations', { token });
        assert.equal(list.status, 200, `conversation list answered ${list.status}`);
      }
      console.log(`# frozen primary: sends ${JSON.stringify(sends)}; reads ${JSON.stringify(reads)}`);
      assert.ok(sends.some((x) => x.status === 503), 'the frozen primary refused sends');
    } finally {
      signalAll(frozen, 'SIGCONT');
    }
    await waitUntil('/readyz ok again', async () => (await call(url, '/readyz')).body?.state === 'ok', 30_000);
    await waitUntil('the socket is told: ok', () => statuses.lastIndexOf('ok') > statuses.indexOf('degraded'), 10_000);
    socket.close();
    assert.equal((await cli(['maintenance', 'stop', '--reason', 'thawed', '--dir', dir])).code, 0);
    await writer.waitForAcks(10, 30_000);
    const report = await writer.stop();
    assertExactlyOnce(report, await writer.history());
    const sent = await call(url, `/v1/conversations/${conversationId}/messages`, { method: 'POST', token, body: { clientMessageId: randomUUID(), body: 'after the thaw' } });
    assert.equal(sent.status, 201);
  });

  test('a slowed standby leaves the read pool and comes back; a client reads its own writes at once', async () => {
    await waitUntil('healthy', () => clusterHealthy(dir), 60_000);
    const s = await clusterStatus(dir);
    const slow = s.nodes.find((n) => n.role === 'standby')!;
    const port = (s.nodes.find((n) => n.name === slow.name) as unknown as { port: number }).port;
    await withParleyDatabase(dir, port, async (client) => {
      await client.query("ALTER SYSTEM SET recovery_min_apply_delay = '30s'");
      await client.query('SELECT pg_reload_conf()');
    });
    try {
      const writer = await startWriter(url);
      await waitUntil(`${slow.name} leaves the read pool`, async () => {
        const detail: string = (await call(url, '/readyz')).body?.detail ?? '';
        return /read pool: /.test(detail) && !detail.includes(slow.name);
      }, 15_000);
      // Read-your-writes: every message this client sends is in its very next history read.
      for (let i = 0; i < 20; i++) {
        const clientMessageId = randomUUID();
        const sent = await call(url, `/v1/conversations/${conversationId}/messages`, { method: 'POST', token, body: { clientMessageId, body: `own ${i}` } });
        assert.equal(sent.status, 201);
        const read = await call(url, `/v1/conversations/${conversationId}/messages?limit=5`, { token });
        assert.equal(read.status, 200);
        assert.ok(read.body.messages.some((m: { clientMessageId: string }) => m.clientMessageId === clientMessageId), `message ${i} read back at once`);
      }
      const report = await writer.stop();
      assert.equal(report.failures.length, 0, JSON.stringify(report.failures.slice(0, 3)));
    } finally {
      await withParleyDatabase(dir, port, async (client) => {
        await client.query('ALTER SYSTEM RESET recovery_min_apply_delay');
        await client.query('SELECT pg_reload_conf()');
      });
    }
    await waitUntil(`${slow.name} is back in the read pool`, async () => ((await call(url, '/readyz')).body?.detail ?? '').includes(slow.name), 60_000);
    await sleep(0);
  });
});

describe('two app servers', () => {
  let dir = '';
  let url = '';
  let second = '';

  before(async () => {
    ({ dir, url } = await startCluster({ PARLEY_APP_SERVERS: '2' }));
    const port = Number(new URL(url).port);
    second = `http://127.0.0.1:${port + 1}`;
  });

  async function account(base: string) {
    const username = `u${randomUUID().slice(0, 8)}`;
    assert.equal((await call(base, '/v1/accounts', { method: 'POST', body: { username, password: 'long-enough' } })).status, 201);
    return { username, token: (await call(base, '/v1/sessions', { method: 'POST', body: { username, password: 'long-enough' } })).body.token as string };
  }

  /** A socket of `token` on `base`, collecting the bodies of the messages it is sent live and the conversations of typing frames. */
  async function socketOf(base: string, token: string) {
    const socket = new WebSocket(`${base.replace('http', 'ws')}/v1/stream?token=${token}`);
    const bodies: string[] = [];
    const typing: string[] = [];
    socket.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { type: string; message?: { body: string }; conversationId?: string };
      if (frame.type === 'message') bodies.push(frame.message!.body);
      if (frame.type === 'typing') typing.push(frame.conversationId!);
    });
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    return { socket, bodies, typing };
  }

  test('a message and a typing indicator sent through one arrive live on the other, also after a failover; the writers of both see no failed send', async () => {
    const alice = await account(url);
    const bob = await account(second);
    const direct = await call(url, '/v1/conversations', { method: 'POST', token: alice.token, body: { kind: 'direct', members: [bob.username] } });
    assert.equal(direct.status, 201);
    const listener = await socketOf(second, bob.token);
    const typist = await socketOf(url, alice.token);
    try {
      const sent = await call(url, `/v1/conversations/${direct.body.id}/messages`, { method: 'POST', token: alice.token, body: { clientMessageId: randomUUID(), body: 'across servers' } });
      assert.equal(sent.status, 201);
      await waitUntil('the message reaches the socket on the other app server', () => listener.bodies.includes('across servers'), 10_000);
      // Typing is live only; its frames may be lost, so alice keeps typing until bob hears it.
      const typeUntilHeard = async (what: string) => {
        const heard = listener.typing.length;
        await waitUntil(what, () => {
          typist.socket.send(JSON.stringify({ type: 'typing', conversationId: direct.body.id }));
          return listener.typing.length > heard;
        }, 15_000);
        assert.ok(listener.typing.slice(heard).every((c) => c === direct.body.id));
      };
      await typeUntilHeard('alice typing on app server 1 reaches bob on app server 2');
      assert.equal(typist.typing.length, 0, 'her own indicator does not come back to alice');

      // Kill the primary under one writer per app server.
      const writers = [await startWriter(url), await startWriter(second)];
      await Promise.all(writers.map((w) => w.waitForAcks(10, 30_000)));
      const before = await clusterStatus(dir);
      // The whole node: its agent and its PostgreSQL (the server alone would be restarted in place).
      const primary = before.nodes.find((n) => n.name === before.primary)!;
      process.kill(primary.agentPid!, 'SIGKILL');
      process.kill(primary.pid!, 'SIGKILL');
      await waitUntil('a new primary', async () => {
        const s = await clusterStatus(dir);
        return s.primary !== null && s.primary !== before.primary;
      }, 60_000);
      await Promise.all(writers.map((w) => w.waitForAcks(10, 30_000)));
      const reports = await Promise.all(writers.map((w) => w.stop()));
      for (const [i, report] of reports.entries()) {
        console.log(`# writer on app server ${i + 1}: ${report.acked.length} acknowledged, ${report.failures.length} failed attempts`);
        assert.equal(report.failures.length, 0, `writer ${i + 1} saw failures: ${JSON.stringify(report.failures.slice(0, 3))}`);
        assertExactlyOnce(report, await writers[i]!.history());
      }
      const again = await call(url, `/v1/conversations/${direct.body.id}/messages`, { method: 'POST', token: alice.token, body: { clientMessageId: randomUUID(), body: 'after the failover' } });
      assert.equal(again.status, 201);
      await waitUntil('the message after the failover reaches the other app server', () => listener.bodies.includes('after the failover'), 15_000);
      assert.equal(listener.bodies.filter((b) => b === 'across servers').length, 1, 'delivered once');
      await typeUntilHeard('typing crosses app servers after the failover too');
    } finally {
      listener.socket.close();
      typist.socket.close();
    }
  });
});
