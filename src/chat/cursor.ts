// The /v1/sync cursor: an opaque string over a position (xid, id) in the events log. Pure.
import { ParleyError } from '../errors/errors.ts';

/** A position in the events log: everything at or before it has been delivered. */
export interface Cursor {
  xid: bigint;
  id: bigint;
}

/** Encodes a cursor as an opaque, URL-safe string. */
export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(`v1:${cursor.xid}:${cursor.id}`).toString('base64url');
}

/** Decodes a cursor; 400 when it is not one of ours. */
export function decodeCursor(text: string): Cursor {
  const fail = () => new ParleyError('validation_failed', 'cursor is not valid: use the cursor from a previous /v1/sync answer');
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(text)) throw fail();
  const match = /^v1:(\d{1,20}):(\d{1,20})$/.exec(Buffer.from(text, 'base64url').toString('utf8'));
  if (!match) throw fail();
  const xid = BigInt(match[1]!);
  const id = BigInt(match[2]!);
  if (xid >= 2n ** 64n || id >= 2n ** 63n) throw fail();
  return { xid, id };
}
