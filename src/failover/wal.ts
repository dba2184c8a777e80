// WAL arithmetic over timelines, pure. Timeline ids are never reused within a cluster, so the
// timeline a server's WAL is on at a position identifies every byte up to that position: two
// servers agreeing there have the same WAL up to it.
import type { Wal, WalPosition } from './types.ts';

/**
 * The timeline a server's WAL is on at `position` (the last byte before it, for a switch point).
 * A standby that followed a new timeline before replaying up to its switch point and is then promoted
 * writes a history whose last switch point lies before an earlier one (PostgreSQL copies the parent's
 * history as it is), so each entry ends at the smallest switch point at or after it.
 */
export function timelineAt(wal: Wal, position: WalPosition): number {
  let result = wal.timeline;
  let limit = Infinity;
  for (let i = wal.history.length - 1; i >= 0; i -= 1) {
    const entry = wal.history[i]!;
    if (entry.endLsn < limit) limit = entry.endLsn;
    if (position > limit) break;
    result = entry.timeline;
  }
  return result;
}

/** Whether `inner`'s WAL is a prefix of `outer`'s: everything `inner` has, `outer` has too. */
export function containsWal(outer: Wal, inner: Wal): boolean {
  return inner.flushedLsn <= outer.flushedLsn && timelineAt(outer, inner.flushedLsn) === timelineAt(inner, inner.flushedLsn);
}

/**
 * Whether a standby can stream from `primary` without a rewind: its WAL lies on the primary's
 * history. The primary's own position is not compared, because a published one is always a little
 * old and the primary keeps writing on its current timeline.
 */
export function canStreamFrom(standby: Wal, primary: Wal): boolean {
  return timelineAt(primary, standby.flushedLsn) === timelineAt(standby, standby.flushedLsn);
}

/** The last position up to which `a` and `b` have identical WAL (where a rewind takes one back to). */
export function commonPosition(a: Wal, b: Wal): WalPosition {
  const limit = Math.min(a.flushedLsn, b.flushedLsn);
  // Agreement holds on a prefix [0, d]; d is the limit or a switch point of one of them.
  let best = 0;
  const consider = (position: WalPosition): void => {
    if (position > limit || position <= best) return;
    if (timelineAt(a, position) === timelineAt(b, position)) best = position;
  };
  consider(limit);
  for (const entry of a.history) consider(entry.endLsn);
  for (const entry of b.history) consider(entry.endLsn);
  return best;
}

/** Renders a position the way PostgreSQL does: `0/3000060`. */
export function formatLsn(position: WalPosition): string {
  const high = Math.floor(position / 0x1_0000_0000);
  const low = position - high * 0x1_0000_0000;
  return `${high.toString(16).toUpperCase()}/${low.toString(16).toUpperCase()}`;
}

/** Renders a byte count for a reason line: `512 B`, `40.0 KiB`, `3.2 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
