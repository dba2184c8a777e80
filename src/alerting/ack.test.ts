// Proves signed acknowledgement links: a link made for (alert, person, expiry) verifies until it
// expires, and changing any of its parts, or signing with another secret, makes it fail.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ackLink, parseAckLink, signAck, verifyAck } from './ack.ts';

const secret = 'a-secret-of-sixteen+';
const grant = { alertId: '3f9c2a1b0d4e5f67', person: 'alice', expiresAtMs: Date.parse('2024-06-03T12:00:00Z') };
const before = grant.expiresAtMs - 1;

test('a link made by ackLink parses back and verifies until it expires', () => {
  // Proves the round trip through a real URL and the expiry boundary.
  const link = ackLink('https://parley.example.org/ops/', grant, secret);
  assert.match(link, /^https:\/\/parley\.example\.org\/ops\/v1\/ops\/alerts\/3f9c2a1b0d4e5f67\/ack\?person=alice&expires=\d+&signature=[\w-]+$/);
  const signed = parseAckLink(link);
  assert.ok(signed);
  assert.deepEqual(verifyAck(signed, secret, before), { ok: true });
  assert.deepEqual(verifyAck(signed, secret, grant.expiresAtMs), { ok: false, reason: 'expired' });
});

test('a tampered link does not verify', () => {
  // Proves the signature covers the alert, the person and the expiry, and depends on the secret.
  const signed = { ...grant, signature: signAck(grant, secret) };
  assert.deepEqual(verifyAck({ ...signed, person: 'mallory' }, secret, before), { ok: false, reason: 'bad_signature' });
  assert.deepEqual(verifyAck({ ...signed, alertId: 'another' }, secret, before), { ok: false, reason: 'bad_signature' });
  assert.deepEqual(verifyAck({ ...signed, expiresAtMs: grant.expiresAtMs + 86_400_000 }, secret, before), { ok: false, reason: 'bad_signature' });
  assert.deepEqual(verifyAck(signed, 'another-secret-of-16', before), { ok: false, reason: 'bad_signature' });
  assert.deepEqual(verifyAck({ ...signed, signature: signed.signature.slice(1) }, secret, before), { ok: false, reason: 'bad_signature' });
  assert.deepEqual(verifyAck({ ...signed, signature: '' }, secret, before), { ok: false, reason: 'bad_signature' });
  assert.deepEqual(verifyAck(signed, '', before), { ok: false, reason: 'malformed' });
  const link = ackLink('http://127.0.0.1:8080', grant, secret).replace('person=alice', 'person=bob');
  assert.deepEqual(verifyAck(parseAckLink(link)!, secret, before), { ok: false, reason: 'bad_signature' });
  assert.equal(parseAckLink('http://127.0.0.1:8080/v1/ops/alerts/x/ack?person=a&expires=soon&signature=s'), undefined);
  assert.equal(parseAckLink('not a url'), undefined);
});

test('property: changing any one field of a grant breaks its signature', () => {
  // Proves the encoding is unambiguous: ("a:b", "c") and ("a", "b:c") never share a signature.
  fc.assert(
    fc.property(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (a, b, c, d) => {
      fc.pre(a !== c || b !== d);
      const one = { alertId: a, person: b, expiresAtMs: 1 };
      const two = { alertId: c, person: d, expiresAtMs: 1 };
      assert.notEqual(signAck(one, secret), signAck(two, secret));
      assert.deepEqual(verifyAck({ ...two, signature: signAck(one, secret) }, secret, 0), { ok: false, reason: 'bad_signature' });
    }),
    { numRuns: 300 },
  );
});
