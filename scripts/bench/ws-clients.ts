// A client process that holds many idle authenticated WebSockets for the memory benchmark. One
// process can hold fewer than `ulimit -Hn` sockets, so the benchmark starts several of these.
// Driven over IPC by its parent: `open` → progress … `opened`; `close` (or the parent going
// away, or `holdMaxMs` passing) → terminate every socket and exit.
import type WebSocket from 'ws';
import { openStream } from './ws-connect.ts';

/** Parent → child. */
export type ClientCommand =
  | { type: 'open'; wsBaseUrl: string; tokens: string[]; tokenOffset: number; count: number; concurrency: number; openTimeoutMs: number; holdMaxMs: number }
  | { type: 'close' };

/** Child → parent. */
export type ClientReport =
  | { type: 'progress'; open: number; failed: number; dropped: number }
  | { type: 'opened'; open: number; failed: number; errors: string[] };

// Distinct failure messages kept for the report.
const errorSamplesMax = 5;
const progressIntervalMs = 2_000;

function report(message: ClientReport): void {
  process.send?.(message);
}

const sockets: WebSocket[] = [];
let closing = false;

function closeAll(code: number): never {
  closing = true;
  for (const ws of sockets) ws.terminate();
  process.exit(code);
}

async function open(command: Extract<ClientCommand, { type: 'open' }>): Promise<void> {
  setTimeout(() => closeAll(0), command.holdMaxMs).unref();
  let next = 0;
  let openCount = 0;
  let failed = 0;
  let dropped = 0;
  const errors = new Set<string>();
  // Keeps reporting while the sockets are held, so the parent learns of sockets the server closed.
  setInterval(() => report({ type: 'progress', open: openCount, failed, dropped }), progressIntervalMs).unref();
  async function worker(): Promise<void> {
    while (next < command.count && !closing) {
      const index = next++;
      const token = command.tokens[(command.tokenOffset + index) % command.tokens.length]!;
      try {
        const ws = await openStream(command.wsBaseUrl, token, command.openTimeoutMs);
        sockets.push(ws);
        openCount++;
        ws.on('error', () => undefined);
        ws.once('close', () => {
          if (!closing) dropped++;
        });
      } catch (error) {
        failed++;
        if (errors.size < errorSamplesMax) errors.add((error as Error).message);
      }
    }
  }
  await Promise.all(Array.from({ length: command.concurrency }, worker));
  report({ type: 'opened', open: openCount, failed, errors: [...errors] });
}

process.on('message', (command: ClientCommand) => {
  if (command.type === 'open') void open(command);
  else if (command.type === 'close') closeAll(0);
});
process.on('disconnect', () => closeAll(0));
if (!process.send) {
  process.stderr.write('ws-clients.ts is started by scripts/bench.ts over IPC; it does nothing on its own\n');
  process.exit(2);
}
