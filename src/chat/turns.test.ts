// Proves the turns of sends per conversation: at most `perConversation` run at once per key, the
// rest start in arrival order as turns end, another key is never held up, a send whose turn does not
// come within its bound (or finds too many waiting) is answered 503 overloaded with Retry-After 1,
// and a failing send gives its turn back. Order and counts only; the one bound used is never reached
// by a send that gets its turn, so the tests do not depend on the machine's speed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isParleyError, type ParleyError } from '../errors/errors.ts';
import { createSendTurns } from './turns.ts';

/** A send that runs until the test lets it finish. */
function held() {
  let finish!: () => void;
  let fail!: (error: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  return { fn: () => done, finish, fail };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('two sends of a conversation run at once, the rest start in arrival order, and another conversation is not held up', async () => {
  const turns = createSendTurns({ perConversation: 2, waitMaxMs: 60_000, waitingMax: 100 });
  const started: number[] = [];
  const sends = Array.from({ length: 6 }, () => held());
  const results = sends.map((s, i) =>
    turns.run('hot', () => {
      started.push(i);
      return s.fn();
    }),
  );
  await tick();
  assert.deepEqual(started, [0, 1]);
  assert.deepEqual(turns.stats(), { waiting: 4, shed: 0 });

  let otherRan = false;
  await turns.run('quiet', async () => {
    otherRan = true;
  });
  assert.ok(otherRan, 'a send to another conversation runs while the hot one is full');

  sends[1]!.finish();
  await tick();
  assert.deepEqual(started, [0, 1, 2]);
  sends[0]!.fail(new Error('lost'));
  await assert.rejects(results[0]!, /lost/);
  await tick();
  assert.deepEqual(started, [0, 1, 2, 3], 'a failed send gives its turn back');
  for (const s of sends.slice(2)) s.finish();
  await Promise.all(results.slice(1));
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(turns.stats(), { waiting: 0, shed: 0 });
});

test('a send whose turn does not come within its bound, or that finds too many waiting, is a 503 overloaded with Retry-After 1; the queue goes on', async () => {
  const turns = createSendTurns({ perConversation: 1, waitMaxMs: 30, waitingMax: 2 });
  const blocker = held();
  const running = turns.run('c', blocker.fn);
  const late = turns.run('c', async () => 'never');
  const second = turns.run('c', async () => 'never');
  // The third waiter finds two waiting: shed at once, before any bound.
  const third = await turns.run('c', async () => 'never').then(
    () => assert.fail('ran past a full line'),
    (e: unknown) => e as ParleyError,
  );
  assert.ok(isParleyError(third) && third.code === 'overloaded' && third.retryAfterSeconds === 1, String(third));
  // The blocker never ends within the bound: both waiters are shed.
  for (const waiting of [late, second]) {
    const error = await waiting.then(
      () => assert.fail('ran while the turn was held'),
      (e: unknown) => e as ParleyError,
    );
    assert.ok(isParleyError(error) && error.code === 'overloaded' && error.retryAfterSeconds === 1);
  }
  assert.deepEqual(turns.stats(), { waiting: 0, shed: 3 });
  // The shed waiters left no trace: the next send runs as soon as the turn is free.
  blocker.finish();
  await running;
  assert.equal(await turns.run('c', async () => 'ran'), 'ran');
});
