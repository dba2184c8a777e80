// In-process fan-out of live events to the sockets of one app server. Delivery is best effort:
// a socket that misses an event catches up through /v1/sync, which reads the durable log.
import type { ChatEvent } from './shapes.ts';

/** Receives events for one account (one open socket). */
export type Listener = (event: ChatEvent) => void;

/** Publish/subscribe keyed by account id. */
export interface Hub {
  subscribe(accountId: string, listener: Listener): () => void;
  publish(event: ChatEvent, accountIds: readonly string[]): void;
  /** Open subscriptions (sockets) on this server. */
  size(): number;
}

/** Creates an empty hub. */
export function createHub(): Hub {
  const byAccount = new Map<string, Set<Listener>>();
  let count = 0;
  return {
    subscribe(accountId, listener) {
      let set = byAccount.get(accountId);
      if (!set) {
        set = new Set();
        byAccount.set(accountId, set);
      }
      set.add(listener);
      count++;
      return () => {
        const current = byAccount.get(accountId);
        if (current?.delete(listener)) {
          count--;
          if (current.size === 0) byAccount.delete(accountId);
        }
      };
    },
    publish(event, accountIds) {
      for (const id of accountIds) {
        const set = byAccount.get(id);
        if (!set) continue;
        for (const listener of [...set]) {
          try {
            listener(event);
          } catch {
            // A broken listener must not stop delivery to the others; it is closed by its owner.
          }
        }
      }
    },
    size() {
      return count;
    },
  };
}
