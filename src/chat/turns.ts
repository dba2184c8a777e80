// Sends to one conversation take turns on this app server before they ask for a database connection.
//
// Every send to a conversation takes the conversation's advisory lock (parley.send_message), so
// the database stores them one at a time whatever the app does. Without turns, a burst to one hot
// conversation — 60 sends at once from two clients, or a big group during an incident — took every
// connection of the pool, each held by a send waiting on that lock: sends to every other
// conversation queued behind them (head-of-line blocking), and admission control saw a queue of
// sends that stood for as long as the burst drained and could not tell it from overload
// (docs/benchmarks.md, overload). With turns, a conversation holds at most `perConversation`
// connections: one send inside the lock and one ready behind it (its checks done), so the lock
// never idles and the hot conversation is as fast as before, and the pool's queue holds only work
// that the pool itself is too slow for.
//
// A turn is waited for in order (FIFO per conversation) and for at most `waitMaxMs` — the time the
// send would otherwise have waited on the lock inside PostgreSQL (data.queryTimeoutMs); after
// that, or when `waitingMax` sends already wait for this conversation, the send is answered at once:
// 503 `overloaded` with Retry-After 1 (the client's outbox sends it again with the same
// clientMessageId). Written here rather than taken from a library: it is a keyed semaphore of a few
// lines whose bounds and error are Parley's own.
import { ParleyError } from '../errors/errors.ts';

/** The turns of one app server. */
export interface SendTurns {
  /** Runs `fn` when `key` has a free turn; rejects 'overloaded' if none comes within the bound. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Sends waiting for a turn now, and shed since the start. */
  stats(): { waiting: number; shed: number };
}

interface Waiter {
  start: () => void;
  timer: NodeJS.Timeout;
}

interface Line {
  running: number;
  waiting: Waiter[];
}

/** Creates the turns of one app server. */
export function createSendTurns(options: { perConversation: number; waitMaxMs: number; waitingMax: number }): SendTurns {
  const { perConversation, waitMaxMs, waitingMax } = options;
  if (!Number.isInteger(perConversation) || perConversation < 1) throw new Error(`turns: perConversation must be a whole number ≥ 1, got ${perConversation}`);
  if (!(waitMaxMs > 0)) throw new Error(`turns: waitMaxMs must be > 0, got ${waitMaxMs}`);
  const lines = new Map<string, Line>();
  let waitingNow = 0;
  let shed = 0;

  function overloaded(why: string): ParleyError {
    shed += 1;
    return new ParleyError('overloaded', `This conversation has more sends under way than the server can store in time (${why}); retry in 1 s`, { retryAfterSeconds: 1 });
  }

  /** A turn ends: it passes to the oldest waiter (still counted as running), or is given back. */
  function done(key: string, line: Line): void {
    const next = line.waiting.shift();
    if (next) {
      waitingNow -= 1;
      clearTimeout(next.timer);
      next.start();
      return;
    }
    line.running -= 1;
    if (line.running === 0) lines.delete(key);
  }

  return {
    async run(key, fn) {
      let line = lines.get(key);
      if (!line) {
        line = { running: 0, waiting: [] };
        lines.set(key, line);
      }
      if (line.running >= perConversation) {
        if (line.waiting.length >= waitingMax) throw overloaded(`${waitingMax} sends already wait for it`);
        const current = line;
        await new Promise<void>((resolve, reject) => {
          const waiter: Waiter = {
            start: resolve,
            timer: setTimeout(() => {
              const at = current.waiting.indexOf(waiter);
              if (at >= 0) current.waiting.splice(at, 1);
              waitingNow -= 1;
              reject(overloaded(`no turn within ${waitMaxMs} ms`));
            }, waitMaxMs),
          };
          current.waiting.push(waiter);
          waitingNow += 1;
        });
        // The turn was handed over by done(): `running` still counts it.
      } else line.running += 1;
      try {
        return await fn();
      } finally {
        done(key, line);
      }
    },
    stats: () => ({ waiting: waitingNow, shed }),
  };
}
