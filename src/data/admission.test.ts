// Proves the shell of admission control carries out the core's decisions: a slot given back admits
// the next request, a shed request rejects with 'overloaded' (Retry-After by class, cause `shed`,
// counted by class and reason), the timer sheds what waited its bound, and closing the pool fails
// what waits without counting it as shed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isParleyError, ParleyError } from '../errors/errors.ts';
import { createAdmissionQueue, type AdmissionLimits } from './admission-core.ts';
import { admissionLimitsFor, createAdmission, createAdmissionCounters, sumAdmission } from './admission.ts';
import { failureOrigin } from './failures.ts';

const limits: AdmissionLimits = {
  inFlightMax: 1,
  waitingMax: 2,
  waitMaxMs: { send: 60_000, read: 20, typing: 60_000 },
  standing: { intervalMs: 1e9, waitMaxMs: { send: 20, read: 10, typing: 5 } },
};

function overloaded(error: unknown): boolean {
  return isParleyError(error) && error.code === 'overloaded';
}

test('a slot given back goes to the next request, sends first; a full queue sheds the lowest class', async () => {
  const counters = createAdmissionCounters();
  const admission = createAdmission(limits, counters);
  const release = await admission.acquire('typing');
  const order: string[] = [];
  const typing = admission.acquire('typing').then(
    () => order.push('typing'),
    (error: unknown) => order.push(overloaded(error) ? 'typing shed' : 'typing failed'),
  );
  const read = admission.acquire('read');
  const send = admission.acquire('send').then((r) => {
    order.push('send');
    return r;
  });
  await typing;
  assert.deepEqual(order, ['typing shed'], 'the send made room by shedding the waiting typing');
  assert.deepEqual(admission.snapshot(), { inFlight: 1, waiting: { send: 1, read: 1, typing: 0 } });
  release();
  release(); // twice is once
  const releaseSend = await send;
  assert.deepEqual(order, ['typing shed', 'send']);
  releaseSend();
  (await read)();
  const stats = sumAdmission([admission.snapshot()], counters);
  assert.deepEqual(stats.admitted, { send: 1, read: 1, typing: 1 });
  assert.equal(stats.shed.typing['queue-full'], 1);
  assert.equal(stats.inFlight, 0);
});

test('a shed request is a 503 overloaded with Retry-After by class and cause shed; the timer sheds a read at its bound', async () => {
  const counters = createAdmissionCounters();
  const admission = createAdmission(limits, counters);
  const release = await admission.acquire('send');
  // Nothing gives the slot back: the read's 20 ms bound ends its wait (an event, not a timing).
  const error = await admission.acquire('read').then(
    () => assert.fail('admitted while the slot was held'),
    (e: unknown) => e,
  );
  assert.ok(overloaded(error));
  assert.equal((error as ParleyError).retryAfterSeconds, 2);
  assert.equal(failureOrigin(error)?.cause, 'shed');
  assert.equal(counters.shed.read['wait-timeout'], 1);
  release();
});

test('closing fails what waits with the given error, not counted as shed, and refuses what comes later', async () => {
  const counters = createAdmissionCounters();
  const admission = createAdmission(limits, counters);
  await admission.acquire('send');
  const waiting = admission.acquire('send');
  admission.close(() => new ParleyError('storage_unavailable', 'closed'));
  await assert.rejects(waiting, (e: unknown) => isParleyError(e) && e.code === 'storage_unavailable');
  await assert.rejects(admission.acquire('send'), (e: unknown) => isParleyError(e) && e.code === 'storage_unavailable');
  assert.equal(Object.values(counters.shed.send).reduce((a, b) => a + b, 0), 0);
});

test('the production limits follow the pool and data.connectTimeoutMs, and shedIfOverloaded lets work through while nothing stands', () => {
  const production = admissionLimitsFor({ poolSize: 10, connectTimeoutMs: 3000 });
  assert.equal(production.inFlightMax, 10);
  assert.equal(production.waitingMax, 500);
  assert.deepEqual(production.waitMaxMs, { send: 3000, read: 1000, typing: 250 });
  assert.deepEqual(admissionLimitsFor({ poolSize: 1, connectTimeoutMs: 200 }).waitMaxMs, { send: 200, read: 200, typing: 200 });
  const admission = createAdmission(production, createAdmissionCounters());
  admission.shedIfOverloaded('typing');
});

test('production limits: a burst of sends the pool drains is not shed; sends that keep coming faster than it drains are, after the interval, and only then', () => {
  // What reaches this queue is pool work only: sends of one conversation take turns before it
  // (chat/turns.ts; src/api/hot-conversation.test.ts), so a hot conversation's burst is not here.
  const limits = admissionLimitsFor({ poolSize: 10, connectTimeoutMs: 3000 });
  assert.deepEqual(limits.standing.waitMaxMs, { send: 20, read: 10, typing: 5 });

  // 200 sends at once, each holding its connection 5 ms: the queue drains in 100 ms, shrinking.
  let queue = createAdmissionQueue(limits);
  let shed = 0;
  let admitted = 0;
  let running = 0;
  const note = (d: { admitted: number[]; shed: unknown[] }): void => {
    admitted += d.admitted.length;
    running += d.admitted.length;
    shed += d.shed.length;
  };
  for (let id = 1; id <= 200; id += 1) note(queue.arrive(id, 'send', 0));
  for (let t = 5; running > 0; t += 5) {
    const finishing = running;
    for (let i = 0; i < finishing; i += 1) {
      running -= 1;
      note(queue.finish(t));
    }
  }
  assert.equal(admitted, 200);
  assert.equal(shed, 0, 'a burst that drains is served whole');

  // Sends arriving at 3 per ms against a pool that finishes 2 per ms: the queue grows and stands, and
  // from then on sends are shed — none before the interval has passed.
  queue = createAdmissionQueue(limits);
  const shedAt: number[] = [];
  let id = 0;
  running = 0;
  for (let t = 0; t < 1000; t += 1) {
    for (let i = 0; i < 3; i += 1) {
      const d = queue.arrive(++id, 'send', t);
      running += d.admitted.length;
      for (const _ of d.shed) shedAt.push(t);
    }
    for (let i = 0; i < 2 && running > 0; i += 1) {
      running -= 1;
      const d = queue.finish(t);
      running += d.admitted.length;
      for (const _ of d.shed) shedAt.push(t);
    }
    const d = queue.expire(t);
    for (const _ of d.shed) shedAt.push(t);
  }
  assert.ok(shedAt.length > 0, 'sustained overload sheds sends');
  assert.ok(shedAt[0]! >= limits.standing.intervalMs, `the first send shed at ${shedAt[0]} ms, before the queue had stood for the interval`);
  assert.ok(queue.snapshot().waiting.send < limits.waitingMax, 'the queue of sends stays short instead of filling up');
});
