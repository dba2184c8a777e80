// Proves that sync cursors round-trip and that anything not made by us is refused with a 400.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeCursor, encodeCursor } from './cursor.ts';
import { isParleyError } from '../errors/errors.ts';

test('every position round-trips through the opaque cursor', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }), fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }), (xid, id) => {
      assert.deepEqual(decodeCursor(encodeCursor({ xid, id })), { xid, id });
    }),
  );
});

test('random strings are refused as validation_failed, never crash', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (text) => {
      try {
        decodeCursor(text);
        // The only strings that decode are our own encodings.
        assert.match(Buffer.from(text, 'base64url').toString('utf8'), /^v1:\d+:\d+$/);
      } catch (error) {
        assert.ok(isParleyError(error) && error.code === 'validation_failed', String(error));
      }
    }),
    { numRuns: 2000 },
  );
});
