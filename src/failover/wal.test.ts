// Proves the WAL arithmetic decide() relies on: which timeline a position is on, when one server's
// WAL contains another's, and where a rewind takes a diverged server back to.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Wal } from './types.ts';
import { canStreamFrom, commonPosition, containsWal, formatBytes, formatLsn, timelineAt } from './wal.ts';

// node2 promoted at 4000 (timeline 2); node1, the old primary, wrote on to 6000 on timeline 1.
const newPrimary: Wal = { timeline: 2, history: [{ timeline: 1, endLsn: 4000 }], flushedLsn: 9000 };
const oldPrimary: Wal = { timeline: 1, history: [], flushedLsn: 6000 };
const laggingStandby: Wal = { timeline: 1, history: [], flushedLsn: 3000 };

test('a position belongs to the timeline that was current when it was written', () => {
  // Proves history lookup, including the switch point itself (the last byte of the old timeline).
  assert.equal(timelineAt(newPrimary, 3999), 1);
  assert.equal(timelineAt(newPrimary, 4000), 1);
  assert.equal(timelineAt(newPrimary, 4001), 2);
  assert.equal(timelineAt(oldPrimary, 5000), 1);
});

test('a history whose last switch point lies before an earlier one ends the earlier timeline there', () => {
  // Proves the regression of seed 99392: a standby at 0/15CF07 followed timeline 3 (switches 1@0/15CF07,
  // 2@0/383C01) and was promoted at 0/15CF07; nothing of timeline 2 past 0/15CF07 is in its WAL.
  const promoted: Wal = {
    timeline: 4,
    history: [
      { timeline: 1, endLsn: 0x15cf07 },
      { timeline: 2, endLsn: 0x383c01 },
      { timeline: 3, endLsn: 0x15cf07 },
    ],
    flushedLsn: 0x38755a,
  };
  assert.equal(timelineAt(promoted, 0x15cf07), 1);
  assert.equal(timelineAt(promoted, 0x37a28d), 4);
  const timeline2: Wal = { timeline: 2, history: [{ timeline: 1, endLsn: 0x15cf07 }], flushedLsn: 0x200000 };
  assert.equal(containsWal(promoted, timeline2), false);
});

test('containment: a prefix on the same history is contained, diverged WAL is not', () => {
  // Proves the candidate check of invariant 5.
  assert.equal(containsWal(newPrimary, laggingStandby), true);
  assert.equal(containsWal(oldPrimary, laggingStandby), true);
  assert.equal(containsWal(newPrimary, oldPrimary), false);
  assert.equal(containsWal(laggingStandby, oldPrimary), false);
});

test('a standby streams from a primary only if its WAL lies on the primary’s history', () => {
  // Proves follow-or-rewind: the lagging standby follows, the old primary must rewind.
  assert.equal(canStreamFrom(laggingStandby, newPrimary), true);
  assert.equal(canStreamFrom(oldPrimary, newPrimary), false);
  // A published position is always a little old: a standby ahead of it on the same timeline still streams.
  assert.equal(canStreamFrom({ ...newPrimary, flushedLsn: 9500 }, newPrimary), true);
});

test('a rewind goes back to where the histories split', () => {
  // Proves the divergence point is the switch point, or the shorter WAL when one contains the other.
  assert.equal(commonPosition(oldPrimary, newPrimary), 4000);
  assert.equal(commonPosition(laggingStandby, newPrimary), 3000);
});

test('containment is a partial order and agrees with commonPosition', () => {
  // Proves the properties the candidate choice relies on, for random WAL in one cluster's timeline tree
  // (timeline 2 branches from 1, timeline 3 from 2 or from 1; ids are never reused).
  const clusterArb = fc.record({
    switch2: fc.integer({ min: 0, max: 100 }),
    switch3: fc.integer({ min: 0, max: 100 }),
    threeFromOne: fc.boolean(),
  });
  const pickArb = fc.record({ timeline: fc.integer({ min: 1, max: 3 }), flushedLsn: fc.integer({ min: 0, max: 120 }) });
  fc.assert(
    fc.property(clusterArb, pickArb, pickArb, pickArb, ({ switch2, switch3, threeFromOne }, ...picks) => {
      const histories: Record<number, Wal['history']> = {
        1: [],
        2: [{ timeline: 1, endLsn: switch2 }],
        3: threeFromOne ? [{ timeline: 1, endLsn: switch3 }] : [{ timeline: 1, endLsn: switch2 }, { timeline: 2, endLsn: Math.max(switch2, switch3) }],
      };
      const [x, y, z] = picks.map(({ timeline, flushedLsn }): Wal => ({ timeline, history: histories[timeline]!, flushedLsn }));
      assert.equal(containsWal(x!, x!), true);
      if (containsWal(x!, y!) && containsWal(y!, x!)) assert.equal(x!.flushedLsn, y!.flushedLsn);
      if (containsWal(x!, y!) && containsWal(y!, z!)) assert.equal(containsWal(x!, z!), true);
      assert.equal(containsWal(x!, y!), commonPosition(x!, y!) === y!.flushedLsn);
    }),
    { numRuns: 3000 },
  );
});

test('positions and sizes print the way operators read them', () => {
  // Proves the formats used in reasons: PostgreSQL's LSN notation and binary units.
  assert.equal(formatLsn(0x3000060), '0/3000060');
  assert.equal(formatLsn(0x1_0000_0010), '1/10');
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(2 * 1_048_576), '2.0 MiB');
});
