// Proves the breaker's states without a clock: closed until `threshold` failures in a row, open
// (refusing, telling requests under way) for the cooldown, then one trial at a time until a success.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createBreaker } from './breaker.ts';

test('a breaker opens after failures in a row, refuses for the cooldown, then lets one request try', async () => {
  const breaker = createBreaker({ cooldownMs: 1000, threshold: 3 });
  breaker.failed(0);
  breaker.succeeded();
  breaker.failed(10);
  breaker.failed(20);
  assert.equal(breaker.allows(30), true, 'two failures in a row after a success: still closed');
  const underWay = breaker.whenOpened();
  let told = false;
  void underWay.promise.then(() => (told = true));
  breaker.failed(40);
  await Promise.resolve();
  assert.equal(told, true, 'a request under way is told when it opens');
  assert.equal(breaker.allows(500), false);
  assert.equal(breaker.isOpen(500), true);
  assert.equal(breaker.allows(1040), true, 'after the cooldown one request may try');
  assert.equal(breaker.allows(1041), false, '... and only one');
  breaker.failed(1100);
  assert.equal(breaker.allows(1500), false, 'the trial failed: open again for a cooldown');
  assert.equal(breaker.allows(2100), true);
  breaker.succeeded();
  assert.equal(breaker.allows(2101), true, 'the trial succeeded: closed');
  breaker.trip(3000);
  assert.equal(breaker.isOpen(3001), true, 'a failed health probe opens it at once');
  breaker.reset();
  assert.equal(breaker.allows(3002), true);
});
