// A circuit breaker for one database node: after `threshold` failures in a row, or at once when
// the node's health probe fails, it opens and requests to the node are refused without waiting;
// after `cooldownMs` one request at a time may try (half-open) until one succeeds or a probe
// does. Requests already running when it opens are told (`whenOpened`), so they are answered at
// once instead of at their own timeout. Pure state; time comes in as an argument.

/** The breaker of one node. */
export interface Breaker {
  /** Whether a request may go to the node at `now` (in half-open state: one at a time). */
  allows(now: number): boolean;
  isOpen(now: number): boolean;
  failed(now: number): void;
  /** Opens at once (a failed health probe). */
  trip(now: number): void;
  succeeded(): void;
  /** Closed and forgotten (the node became primary anew). */
  reset(): void;
  /** Settles when the breaker next opens; cancel() when no longer interested. */
  whenOpened(): { promise: Promise<void>; cancel(): void };
}

export function createBreaker(options: { cooldownMs: number; threshold?: number }): Breaker {
  const threshold = options.threshold ?? 3;
  let failures = 0;
  let openUntil = 0;
  let open = false;
  let trying = false;
  const waiters = new Set<() => void>();

  function openNow(now: number): void {
    const wasOpen = open && now < openUntil;
    open = true;
    trying = false;
    openUntil = now + options.cooldownMs;
    if (!wasOpen) {
      for (const wake of [...waiters]) wake();
      waiters.clear();
    }
  }

  return {
    allows(now) {
      if (!open) return true;
      if (now < openUntil || trying) return false;
      trying = true;
      return true;
    },
    isOpen: (now) => open && (now < openUntil || trying),
    failed(now) {
      failures += 1;
      if (open || failures >= threshold) openNow(now);
    },
    trip: openNow,
    succeeded() {
      failures = 0;
      open = false;
      trying = false;
    },
    reset() {
      failures = 0;
      open = false;
      trying = false;
      openUntil = 0;
    },
    whenOpened() {
      let wake!: () => void;
      const promise = new Promise<void>((resolve) => {
        wake = resolve;
      });
      waiters.add(wake);
      return { promise, cancel: () => void waiters.delete(wake) };
    },
  };
}
