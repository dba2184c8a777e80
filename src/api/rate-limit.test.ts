// Proves the token bucket allows `perMinute` requests in a burst, refuses the next with a retry
// time, and refills with time; keys are independent and bounded.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { createRateLimiter } from './rate-limit.ts';

test('a burst of perMinute passes, the next waits, time refills', () => {
  const limiter = createRateLimiter({ perMinute: 60 });
  for (let i = 0; i < 60; i++) assert.equal(limiter.take('a', 0), 0);
  assert.equal(limiter.take('a', 0), 1);
  assert.equal(limiter.take('b', 0), 0, 'another key has its own bucket');
  assert.equal(limiter.take('a', 1000), 0, 'one second refills one token at 60/min');
  assert.ok(limiter.take('a', 1000) > 0);
});

test('never more than perMinute + elapsed refill are allowed, whatever the timing', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 300 }), fc.array(fc.integer({ min: 0, max: 5000 }), { maxLength: 400 }), (perMinute, gaps) => {
      const limiter = createRateLimiter({ perMinute });
      let now = 0;
      let allowed = 0;
      for (const gap of gaps) {
        now += gap;
        if (limiter.take('k', now) === 0) allowed++;
      }
      assert.ok(allowed <= perMinute + Math.floor((now * perMinute) / 60_000) + 1);
    }),
  );
});

test('remembers at most keysMax keys', () => {
  const limiter = createRateLimiter({ perMinute: 1, keysMax: 2 });
  assert.equal(limiter.take('a', 0), 0);
  assert.ok(limiter.take('a', 0) > 0);
  limiter.take('b', 0);
  limiter.take('c', 0); // evicts "a"
  assert.equal(limiter.take('a', 0), 0, 'an evicted key starts with a full bucket');
});
