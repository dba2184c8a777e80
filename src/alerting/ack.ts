// Signed acknowledgement links: a page carries a link that acknowledges its alert as the person
// paged, so the person can stop the escalation from a phone without signing in. The link carries
// (alertId, person, expiry) and an HMAC-SHA256 of them under the configured secret; whoever holds
// the link may acknowledge that one alert as that person until it expires, and nothing else.
//
// The fields are encoded as a JSON array before signing, so no choice of ids or names can make two
// different triples sign the same bytes, and the signature is compared in constant time.
import { createHmac, timingSafeEqual } from 'node:crypto';

/** What a link grants: acknowledging `alertId` as `person` until `expiresAtMs`. */
export interface AckGrant {
  alertId: string;
  person: string;
  expiresAtMs: number;
}

/** A grant with its signature, as parsed back from a link. */
export interface SignedAck extends AckGrant {
  signature: string;
}

/** Why a link was refused; `ok` links may acknowledge. */
export type AckVerdict = { ok: true } | { ok: false; reason: 'bad_signature' | 'expired' | 'malformed' };

const version = 'parley-ack-v1';

/** The signature of a grant: base64url HMAC-SHA256 under `secret`. */
export function signAck(grant: AckGrant, secret: string): string {
  if (secret === '') throw new Error('Cannot sign an acknowledgement link: alerting.ackSecret is empty');
  const payload = JSON.stringify([version, grant.alertId, grant.person, grant.expiresAtMs]);
  return createHmac('sha256', secret).update(payload).digest('base64url');
}

/** Whether a signed grant is authentic and still valid at `nowMs`. */
export function verifyAck(signed: SignedAck, secret: string, nowMs: number): AckVerdict {
  if (secret === '' || !Number.isSafeInteger(signed.expiresAtMs) || signed.alertId === '' || signed.person === '') {
    return { ok: false, reason: 'malformed' };
  }
  const expected = Buffer.from(signAck(signed, secret), 'base64url');
  const given = Buffer.from(signed.signature, 'base64url');
  // timingSafeEqual needs equal lengths; a length mismatch says nothing about the secret.
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'bad_signature' };
  // Checked after the signature, so an attacker learns nothing from "expired" about a forged link.
  if (nowMs >= signed.expiresAtMs) return { ok: false, reason: 'expired' };
  return { ok: true };
}

/** The link a page carries: `<externalUrl>/v1/ops/alerts/<id>/ack?person=&expires=&signature=`. */
export function ackLink(externalUrl: string, grant: AckGrant, secret: string): string {
  const url = new URL(`v1/ops/alerts/${encodeURIComponent(grant.alertId)}/ack`, externalUrl.endsWith('/') ? externalUrl : `${externalUrl}/`);
  url.searchParams.set('person', grant.person);
  url.searchParams.set('expires', String(grant.expiresAtMs));
  url.searchParams.set('signature', signAck(grant, secret));
  return url.toString();
}

/** The signed grant in a link made by `ackLink`, or undefined when it is not one. */
export function parseAckLink(link: string): SignedAck | undefined {
  let url: URL;
  try {
    url = new URL(link);
  } catch {
    return undefined;
  }
  const match = /\/v1\/ops\/alerts\/([^/]+)\/ack$/.exec(url.pathname);
  const person = url.searchParams.get('person');
  const expires = url.searchParams.get('expires');
  const signature = url.searchParams.get('signature');
  if (!match || person === null || expires === null || signature === null || !/^\d{1,16}$/.test(expires)) return undefined;
  let alertId: string;
  try {
    alertId = decodeURIComponent(match[1]!);
  } catch {
    return undefined;
  }
  return { alertId, person, expiresAtMs: Number(expires), signature };
}
