// Proves delivery's limits with channels that misbehave on purpose: backoff is exponential with
// full jitter under its cap, every attempt is journaled, a round ends after its retries or when
// stopped, an attempt ends at its timeout even if the channel ignores it, and a channel that hangs
// never delays another. Time and chance are injected where a test needs them exact.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { backoffDelayMs, deliverAll, deliverWithRetries, type DeliveryOptions, type Sender } from './deliver.ts';
import type { DeliveryAttempt, Notice } from './types.ts';

const notice: Notice = {
  kind: 'page',
  key: 'page:0:0:alice',
  alert: { id: 'a1', name: 'ReplicationStopped', severity: 'critical', node: 'node2', summary: 's', startsAt: '2024-06-03T10:00:00Z', status: 'firing' },
  level: 0,
  person: 'alice',
  externalUrl: 'http://127.0.0.1:8080',
};

function failingTimes(name: string, failures: number): Sender & { calls: number } {
  const sender = {
    name,
    calls: 0,
    async send() {
      sender.calls++;
      if (sender.calls <= failures) throw new Error(`connect ECONNREFUSED (call ${sender.calls})`);
    },
  };
  return sender;
}

const base: DeliveryOptions = { timeoutMs: 1000, retries: 3, backoffMs: 100, maxBackoffMs: 250 };

test('backoff doubles from backoffMs, is capped at maxBackoffMs, and jitter spans [0, ceiling)', () => {
  // Proves the formula at its edges with a chosen random source.
  const top = () => 0.999999;
  assert.deepEqual([1, 2, 3, 4, 60].map((retry) => backoffDelayMs(retry, base, top)), [99, 199, 249, 249, 249]);
  assert.deepEqual([1, 2, 3].map((retry) => backoffDelayMs(retry, base, () => 0)), [0, 0, 0]);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2000 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (retry, r) => {
      const delay = backoffDelayMs(retry, base, () => r);
      assert.ok(delay >= 0 && delay < Math.min(base.maxBackoffMs, base.backoffMs * 2 ** Math.min(retry - 1, 52)));
    }),
  );
});

test('a failing channel is retried with backoff until it works, and each attempt is journaled', async () => {
  // Proves retries, the injected sleep and random, and the journal entry per attempt.
  const sender = failingTimes('mail', 2);
  const journal: DeliveryAttempt[] = [];
  const waits: number[] = [];
  const result = await deliverWithRetries(sender, notice, {
    ...base,
    random: () => 0.5,
    sleep: async (ms) => void waits.push(ms),
    journal: (attempt) => journal.push(attempt),
  });
  assert.deepEqual(result, { channel: 'mail', ok: true, attempts: 3 });
  assert.deepEqual(waits, [50, 100]);
  assert.deepEqual(
    journal.map((a) => [a.channel, a.alertId, a.notice, a.attempt, a.ok, a.error]),
    [
      ['mail', 'a1', 'page:0:0:alice', 1, false, 'connect ECONNREFUSED (call 1)'],
      ['mail', 'a1', 'page:0:0:alice', 2, false, 'connect ECONNREFUSED (call 2)'],
      ['mail', 'a1', 'page:0:0:alice', 3, true, undefined],
    ],
  );
  assert.ok(journal.every((a) => typeof a.ms === 'number' && a.ms >= 0));
});

test('a round gives up after retries + 1 attempts, and stops early when its signal aborts', async () => {
  // Proves the named maximum on retries and cancellation through AbortSignal.
  const down = failingTimes('mail', Infinity);
  const result = await deliverWithRetries(down, notice, { ...base, sleep: async () => undefined });
  assert.deepEqual(result, { channel: 'mail', ok: false, attempts: 4, error: 'connect ECONNREFUSED (call 4)' });

  const controller = new AbortController();
  const stopped = await deliverWithRetries(failingTimes('mail', Infinity), notice, {
    ...base,
    signal: controller.signal,
    sleep: async () => controller.abort(),
  });
  assert.equal(stopped.ok, false);
  assert.equal(stopped.cancelled, true);
  assert.equal(stopped.attempts, 1);
});

test('an attempt ends at its timeout even when the channel ignores its signal', async () => {
  // Proves a hung channel cannot hold a round: the attempt fails with "timed out" and is retried.
  let aborted = 0;
  const hung: Sender = {
    name: 'hook',
    timeoutMs: 30,
    send: (_notice, signal) => {
      signal.addEventListener('abort', () => aborted++);
      return new Promise(() => undefined); // never settles
    },
  };
  const result = await deliverWithRetries(hung, notice, { ...base, retries: 1, sleep: async () => undefined });
  assert.deepEqual(result, { channel: 'hook', ok: false, attempts: 2, error: 'timed out after 30 ms' });
  assert.equal(aborted, 2);
});

test('a channel that hangs never delays another: the working one settles first', async () => {
  // Proves independence of channels by the order of events, not by timing.
  const order: string[] = [];
  const hung: Sender = { name: 'mail', timeoutMs: 200, send: () => new Promise(() => undefined) };
  const working: Sender = { name: 'hook', send: async () => undefined };
  const results = await deliverAll(
    [
      { sender: hung, notice },
      { sender: working, notice },
    ],
    { ...base, retries: 0, onResult: (job, result) => order.push(`${job.sender.name}:${result.ok}`) },
  );
  assert.deepEqual(order, ['hook:true', 'mail:false']);
  assert.deepEqual(results.map((r) => [r.channel, r.ok]), [
    ['mail', false],
    ['hook', true],
  ]);
});

test('a sender that throws synchronously, or a journal that throws, still yields a result', async () => {
  // Proves robustness at the edges: a bad channel or a bad journal is contained.
  const broken: Sender = {
    name: 'cmd',
    send: () => {
      throw new Error('spawn ENOENT');
    },
  };
  const result = await deliverWithRetries(broken, notice, {
    ...base,
    retries: 0,
    journal: () => {
      throw new Error('journal down');
    },
  });
  assert.deepEqual(result, { channel: 'cmd', ok: false, attempts: 1, error: 'spawn ENOENT' });
});
