// Token buckets per key (account or address). Pure: time comes in as `nowMs`.

/** A set of token buckets with a bounded number of keys. */
export interface RateLimiter {
  /** Takes one token for `key`; returns 0 when allowed, else the seconds until one is available. */
  take(key: string, nowMs: number): number;
}

/** `perMinute` tokens per key, refilled continuously; at most `keysMax` keys remembered. */
export function createRateLimiter(options: { perMinute: number; keysMax?: number }): RateLimiter {
  const capacity = options.perMinute;
  const refillPerMs = options.perMinute / 60_000;
  const keysMax = options.keysMax ?? 100_000;
  const buckets = new Map<string, { tokens: number; atMs: number }>();
  return {
    take(key, nowMs) {
      let bucket = buckets.get(key);
      if (!bucket) {
        if (buckets.size >= keysMax) {
          // Forget the oldest key: at worst it gets a fresh, full bucket.
          buckets.delete(buckets.keys().next().value!);
        }
        bucket = { tokens: capacity, atMs: nowMs };
        buckets.set(key, bucket);
      }
      bucket.tokens = Math.min(capacity, bucket.tokens + Math.max(0, nowMs - bucket.atMs) * refillPerMs);
      bucket.atMs = nowMs;
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return 0;
      }
      return Math.max(1, Math.ceil((1 - bucket.tokens) / refillPerMs / 1000));
    },
  };
}
