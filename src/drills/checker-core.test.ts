// Proves the drill's checker finds each kind of violation it claims to — a lost acknowledgement, a
// duplicate, a seq gap, an acknowledgement with another seq — and passes a clean run in which one
// stored message was never acknowledged (an answer lost on the way, which is allowed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkPassed, checkRun, type Acknowledged, type Stored } from './checker-core.ts';

const stored = (seq: number, clientMessageId: string, senderId = 's1'): Stored => ({ id: `m${seq}-${clientMessageId}`, seq, senderId, clientMessageId });
const acked = (conversationId: string, m: Stored): Acknowledged => ({ conversationId, clientMessageId: m.clientMessageId, messageId: m.id, seq: m.seq });

test('a clean run passes; a message stored but never acknowledged is counted, not a failure', () => {
  const history = [stored(1, 'a'), stored(2, 'b'), stored(3, 'c', 's2')];
  const result = checkRun([acked('c1', history[0]!), acked('c1', history[2]!)], new Map([['c1', history]]));
  assert.equal(checkPassed(result), true, JSON.stringify(result));
  assert.deepEqual([result.acknowledged, result.stored, result.unacknowledged], [2, 3, 1]);
});

test('each violation is found and named', () => {
  const history = [stored(1, 'a'), stored(2, 'b'), stored(4, 'c'), stored(5, 'b')];
  const acks: Acknowledged[] = [
    acked('c1', history[0]!),
    { conversationId: 'c1', clientMessageId: 'gone', messageId: 'm9', seq: 9 },
    { ...acked('c1', history[2]!), seq: 3 },
  ];
  const result = checkRun(acks, new Map([['c1', history]]));
  assert.equal(checkPassed(result), false);
  assert.deepEqual(result.lost.map((l) => l.clientMessageId), ['gone']);
  assert.deepEqual(result.duplicated, [{ conversationId: 'c1', clientMessageId: 'b', count: 2 }]);
  assert.deepEqual(result.gaps, [{ conversationId: 'c1', expected: 3, found: 4 }]);
  assert.deepEqual(result.mismatched.map((m) => [m.clientMessageId, m.acknowledged.seq, m.stored.seq]), [['c', 3, 4]]);
  // An acknowledgement of a conversation the histories do not hold is lost too.
  assert.equal(checkRun([acked('c2', stored(1, 'x'))], new Map()).lost.length, 1);
});
