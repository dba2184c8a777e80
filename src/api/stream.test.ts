// Proves the WebSocket contract: auth on upgrade, send → ack with HTTP's idempotency, live delivery
// to every member's sockets, typing and read events, garbage frames answered with `error` events
// on a socket that stays usable, and a slow consumer disconnected instead of buffered without bound.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import WebSocket from 'ws';
import { httpClient, startTestApp, type TestApp } from './testing.ts';

let t: TestApp;
let http: ReturnType<typeof httpClient>;

before(async () => {
  t = await startTestApp({ http: { rateLimitPerMinute: 100_000 }, websocket: { sendBufferMaxBytes: 65_536 } });
  http = httpClient(t.url);
});
after(async () => {
  await t?.stop();
});

/** A socket with a queue of received frames and a bounded wait for the next matching one. */
async function connect(token: string, how: 'query' | 'header' = 'query') {
  const ws =
    how === 'query'
      ? new WebSocket(`${t.wsUrl}/v1/stream?token=${token}`)
      : new WebSocket(`${t.wsUrl}/v1/stream`, { headers: { authorization: `Bearer ${token}` } });
  const frames: any[] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (data) => {
    frames.push(JSON.parse(data.toString()));
    for (const wake of waiters.splice(0)) wake();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  async function next(match: (frame: any) => boolean, timeoutMs = 5000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = frames.findIndex(match);
      if (index >= 0) return frames.splice(index, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching frame within ${timeoutMs} ms; have ${JSON.stringify(frames).slice(0, 500)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
  return { ws, frames, next, send: (frame: unknown) => ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)) };
}

async function pair() {
  const a = await http.signUp('wa');
  const b = await http.signUp('wb');
  const conversation = (await http.post('/v1/conversations', { kind: 'direct', members: [b.username] }, a.token)).body;
  return { a, b, conversation };
}

describe('stream', () => {
  test('send over the socket → ack; every member socket gets the message; a resend acks the same message', async () => {
    const { a, b, conversation } = await pair();
    const sa = await connect(a.token, 'header');
    const sb1 = await connect(b.token);
    const sb2 = await connect(b.token);
    try {
      assert.equal((await sa.next((f) => f.type === 'status')).state, 'ok');
      const clientMessageId = randomUUID();
      sa.send({ type: 'send', conversationId: conversation.id, clientMessageId, body: 'over the wire' });
      const ack = await sa.next((f) => f.type === 'ack');
      assert.equal(ack.clientMessageId, clientMessageId);
      assert.equal(ack.message.seq, 1);
      for (const socket of [sb1, sb2]) {
        const delivered = await socket.next((f) => f.type === 'message');
        assert.equal(delivered.message.id, ack.message.id);
      }
      sa.send({ type: 'send', conversationId: conversation.id, clientMessageId, body: 'over the wire' });
      const again = await sa.next((f) => f.type === 'ack');
      assert.equal(again.message.id, ack.message.id);
      // The HTTP send with the same id gives the same message too.
      const viaHttp = await http.post(`/v1/conversations/${conversation.id}/messages`, { clientMessageId, body: 'over the wire' }, a.token);
      assert.deepEqual([viaHttp.status, viaHttp.body.message.id], [200, ack.message.id]);

      sb1.send({ type: 'typing', conversationId: conversation.id });
      const typing = await sa.next((f) => f.type === 'typing');
      assert.deepEqual(typing, { type: 'typing', conversationId: conversation.id, accountId: b.id });
      sb1.send({ type: 'read', conversationId: conversation.id, seq: 1 });
      const read = await sa.next((f) => f.type === 'read');
      assert.deepEqual(read, { type: 'read', conversationId: conversation.id, accountId: b.id, seq: 1 });
      // A new conversation reaches the other member live.
      const c = await http.signUp('wc');
      await http.post('/v1/conversations', { kind: 'group', members: [c.username], title: 'live' }, b.token);
      const created = await sb2.next((f) => f.type === 'conversation');
      assert.equal(created.conversation.title, 'live');
    } finally {
      for (const s of [sa, sb1, sb2]) s.ws.terminate();
    }
  });

  test('bad tokens are refused at the upgrade with 401', async () => {
    for (const url of [`${t.wsUrl}/v1/stream`, `${t.wsUrl}/v1/stream?token=nope`, `${t.wsUrl}/v1/stream?token=${'A'.repeat(43)}`]) {
      const status = await new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.on('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.on('open', () => reject(new Error(`${url} was accepted`)));
        ws.on('error', () => undefined);
      });
      assert.equal(status, 401, url);
    }
  });

  test('garbage frames get error events, nothing is stored, and the socket stays usable', async () => {
    const { a, b, conversation } = await pair();
    const sa = await connect(a.token);
    try {
      const table: Array<[unknown, string]> = [
        ['not json', 'validation_failed'],
        ['[1,2,3]', 'validation_failed'],
        [{ type: 'shout' }, 'validation_failed'],
        [{ type: 'send', conversationId: conversation.id, clientMessageId: 'nope', body: 'x' }, 'validation_failed'],
        [{ type: 'send', conversationId: conversation.id, clientMessageId: randomUUID(), body: '' }, 'validation_failed'],
        [{ type: 'send', conversationId: '999999999', clientMessageId: randomUUID(), body: 'x' }, 'not_found'],
        [{ type: 'read', conversationId: conversation.id, seq: 5 }, 'validation_failed'],
      ];
      for (const [frame, code] of table) {
        sa.send(frame);
        const error = await sa.next((f) => f.type === 'error');
        assert.equal(error.code, code, JSON.stringify(frame));
        assert.ok(error.detail.length > 0);
      }
      const outsider = await http.signUp('wo');
      const so = await connect(outsider.token);
      so.send({ type: 'send', conversationId: conversation.id, clientMessageId: randomUUID(), body: 'intrude' });
      assert.equal((await so.next((f) => f.type === 'error')).code, 'forbidden');
      so.ws.terminate();

      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.string(), fc.json(), fc.uint8Array({ maxLength: 64 })), async (garbage) => {
          sa.ws.send(garbage);
          const error = await sa.next((f) => f.type === 'error');
          assert.equal(error.code, 'validation_failed');
        }),
        { numRuns: 300 },
      );
      const clientMessageId = randomUUID();
      sa.send({ type: 'send', conversationId: conversation.id, clientMessageId, body: 'still here' });
      assert.equal((await sa.next((f) => f.type === 'ack')).message.seq, 1);
      const page = await http.get(`/v1/conversations/${conversation.id}/messages`, b.token);
      assert.deepEqual(page.body.messages.map((m: any) => m.body), ['still here']);
    } finally {
      sa.ws.terminate();
    }
  });

  test('a consumer that does not read is disconnected once its send buffer is full', async () => {
    const { a, b, conversation } = await pair();
    const sb = await connect(b.token);
    const closed = new Promise<number>((resolve) => sb.ws.on('close', (code) => resolve(code)));
    // Stop reading at the TCP level: the server's buffer for this socket can only grow.
    (sb.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    // 4000 three-byte characters: 12 KB per event. Loopback TCP buffers absorb several MB before
    // the server's own buffer grows, so this sends up to ~24 MB, in batches, and stops at the drop.
    const body = '€'.repeat(4000);
    let sent = 0;
    for (let batch = 0; batch < 100; batch++) {
      await Promise.all(
        Array.from({ length: 20 }, () => http.post(`/v1/conversations/${conversation.id}/messages`, { clientMessageId: randomUUID(), body }, a.token)),
      );
      sent += 20;
      const metrics = await http.get('/metrics');
      if (/parley_websocket_dropped_total\{reason="send_buffer_full"\} [1-9]/.test(metrics.text)) break;
    }
    const metrics = await http.get('/metrics');
    assert.match(metrics.text, /parley_websocket_dropped_total\{reason="send_buffer_full"\} [1-9]/, `after ${sent} messages`);
    (sb.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    assert.equal(await closed, 4008);
  });
});
