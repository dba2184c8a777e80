// Everything the benchmark starts (PostgreSQL, app servers, client processes, pgbench) registers a
// stop function here. They run in reverse order on every path: normal end, a thrown error, Ctrl-C,
// SIGTERM, or the overall deadline, each bounded so one stuck stop cannot hold up the others.

/** A stack of stop functions plus the signal that tells running phases to give up. */
export interface Cleanup {
  /** Registers a stop function; the returned function runs it now (once) and unregisters it. */
  add(name: string, stop: () => Promise<void>): () => Promise<void>;
  /** Runs every registered stop function, newest first. Safe to call more than once. */
  runAll(): Promise<void>;
  /** Aborted on Ctrl-C, SIGTERM or when the deadline passes. */
  signal: AbortSignal;
}

// A stop that takes longer is abandoned (and reported); the next one still runs.
const stopTimeoutMs = 20_000;

/** Creates the stack and installs the signal handlers and the overall deadline. */
export function createCleanup(options: { deadlineMs: number; log: (line: string) => void }): Cleanup {
  const { log } = options;
  const controller = new AbortController();
  const stack: { name: string; stop: () => Promise<void>; done: boolean }[] = [];

  async function runOne(entry: { name: string; stop: () => Promise<void>; done: boolean }): Promise<void> {
    if (entry.done) return;
    entry.done = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        entry.stop(),
        new Promise<void>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`took over ${stopTimeoutMs} ms`)), stopTimeoutMs);
        }),
      ]);
    } catch (error) {
      log(`cleanup: stopping ${entry.name} failed: ${(error as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  // One run at a time: a signal arriving while the main path cleans up must wait for the same
  // run, not exit halfway through it.
  let running: Promise<void> | undefined;
  function runAll(): Promise<void> {
    running ??= (async () => {
      while (stack.length > 0) await runOne(stack.pop()!);
    })().finally(() => {
      running = undefined;
    });
    return running;
  }

  let exiting = false;
  function abortAndExit(reason: string, code: number): void {
    if (exiting) return;
    exiting = true;
    log(`${reason}: stopping everything the benchmark started`);
    controller.abort(new Error(reason));
    void runAll().finally(() => process.exit(code));
  }
  process.once('SIGINT', () => abortAndExit('interrupted (SIGINT)', 130));
  process.once('SIGTERM', () => abortAndExit('terminated (SIGTERM)', 143));
  const deadline = setTimeout(() => abortAndExit(`deadline of ${Math.round(options.deadlineMs / 1000)} s passed`, 1), options.deadlineMs);
  deadline.unref();

  return {
    add(name, stop) {
      const entry = { name, stop, done: false };
      stack.push(entry);
      return async () => {
        const index = stack.indexOf(entry);
        if (index >= 0) stack.splice(index, 1);
        await runOne(entry);
      };
    },
    runAll,
    signal: controller.signal,
  };
}

/** Resolves after `ms`, or rejects as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    function onAbort(): void {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
