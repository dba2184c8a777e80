// Proves the restart policy of `parley up`: exponential, bounded, reset by a stable run, and
// giving up after a fixed number of consecutive crashes instead of looping forever.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decideRestart, defaultRestartPolicy, type RestartPolicy } from './restart-core.ts';

const policy: RestartPolicy = { initialDelayMs: 500, maxDelayMs: 30_000, stableAfterMs: 60_000, crashesMax: 10 };

test('delays double from the initial delay up to the bound, then the supervisor gives up', () => {
  // Proves the exact schedule an operator reads in docs/cli.md.
  const delays: number[] = [];
  let crashes = 0;
  for (;;) {
    const decision = decideRestart(crashes, 10, policy);
    crashes = decision.crashes;
    if (decision.action === 'give-up') break;
    delays.push(decision.delayMs);
  }
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
  assert.equal(crashes, 10);
});

test('a child that stayed up past stableAfterMs starts over from the initial delay', () => {
  // Proves one crash after a long healthy run is not punished for old crashes.
  assert.deepEqual(decideRestart(8, 60_000, policy), { action: 'restart', delayMs: 500, crashes: 1 });
  assert.deepEqual(decideRestart(9, 60_000, policy), { action: 'restart', delayMs: 500, crashes: 1 });
  assert.deepEqual(decideRestart(9, 59_999, policy), { action: 'give-up', crashes: 10 });
});

test('for any crash history, the delay stays within bounds and never shrinks while crashes continue', () => {
  // Proves the bounds hold for every input, not only for the examples above.
  fc.assert(
    fc.property(fc.nat(20), fc.array(fc.nat(120_000), { maxLength: 30 }), (start, uptimes) => {
      let crashes = Math.min(start, defaultRestartPolicy.crashesMax - 1);
      let previous = 0;
      for (const uptime of uptimes) {
        const decision = decideRestart(crashes, uptime);
        if (decision.action === 'give-up') {
          assert.ok(decision.crashes >= defaultRestartPolicy.crashesMax);
          return;
        }
        assert.ok(decision.delayMs >= defaultRestartPolicy.initialDelayMs && decision.delayMs <= defaultRestartPolicy.maxDelayMs);
        if (uptime < defaultRestartPolicy.stableAfterMs) assert.ok(decision.delayMs >= previous);
        previous = decision.delayMs;
        crashes = decision.crashes;
      }
    }),
  );
});
