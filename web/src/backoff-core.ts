// Reconnect and resend delays: exponential with "equal jitter", so thousands of clients that lost
// the server at the same moment do not come back at the same moment. Pure: randomness comes in.

/** The shape of a backoff schedule. */
export interface BackoffLimits {
  baseMs: number;
  maxMs: number;
}

/** Reconnects and resends: from half a second up to 15 s apart, never more. */
export const reconnectBackoff: BackoffLimits = { baseMs: 500, maxMs: 15_000 };

/**
 * The delay before attempt `attempt` (0 = the first retry): half of the exponential step plus a
 * random share of the other half. `random` is in [0, 1).
 */
export function backoffDelayMs(attempt: number, random: number, limits: BackoffLimits = reconnectBackoff): number {
  const exponent = Math.min(Math.max(0, Math.floor(attempt)), 30);
  const step = Math.min(limits.maxMs, limits.baseMs * 2 ** exponent);
  const share = Math.min(Math.max(random, 0), 1);
  return Math.round(step / 2 + (share * step) / 2);
}
