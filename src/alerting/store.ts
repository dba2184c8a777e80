// Alerting's memory across restarts (issue 8 point 5; Alertmanager loses it, its issue #2370):
// firing alerts, escalation positions, acknowledgements and the outbox of notifications not yet
// delivered, as one JSON file in the state directory.
//
// The file is replaced atomically: write a temporary file, fsync it, rename it over the old one,
// fsync the directory. A crash leaves either the old state or the new one, never half of each.
// Decisions are saved before their notifications are sent, so a restart re-sends what was not
// confirmed and never re-decides what was; the one window left is a send confirmed by the channel
// whose "delivered" mark was not saved yet, which is sent again (at least once, never lost).
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { EscalationState } from './escalation.ts';
import { severities, type Ack, type Alert } from './types.ts';

/** The state file's name inside the state directory. */
export const stateFileName = 'alerting-state.json';

/** One notification on one channel, from decision to delivery (or giving up). */
export interface OutboxEntry {
  /** `<notification key>/<channel>`, unique within the alert's episode. */
  id: string;
  kind: 'page' | 'resolved';
  /** The escalation notification this entry delivers. */
  key: string;
  round: number;
  level: number;
  person: string | null;
  channel: string;
  createdAtMs: number;
  /** When tick() may start the next round of attempts. */
  nextRoundAtMs: number;
  attempts: number;
  status: 'pending' | 'delivered' | 'failed' | 'cancelled';
  lastError?: string;
  deliveredAtMs?: number;
}

/** Everything alerting knows about one episode of one alert. */
export interface AlertRecord {
  alert: Alert;
  escalation: EscalationState;
  ack?: Ack;
  resolvedAtMs?: number;
  outbox: OutboxEntry[];
}

/** The whole persisted state. */
export interface AlertingState {
  version: 1;
  alerts: Record<string, AlertRecord>;
  heartbeat: { lastSentAtMs: number | null };
}

/** A state with nothing in it: the first start, or after a corrupt file was moved aside. */
export function emptyState(): AlertingState {
  return { version: 1, alerts: {}, heartbeat: { lastSentAtMs: null } };
}

const alertSchema = z.object({
  id: z.string().min(1),
  name: z.string(),
  severity: z.enum(severities),
  node: z.string(),
  summary: z.string(),
  startsAt: z.string(),
  endsAt: z.string().optional(),
  status: z.enum(['firing', 'resolved']),
  labels: z.record(z.string(), z.string()).optional(),
});

const recordSchema = z.object({
  alert: alertSchema,
  escalation: z.object({
    sinceMs: z.number(),
    pages: z.array(
      z.object({
        key: z.string(),
        round: z.number().int(),
        level: z.number().int(),
        person: z.string().nullable(),
        channels: z.array(z.string()),
        atMs: z.number(),
      }),
    ),
    resolutionSent: z.boolean(),
  }),
  ack: z.object({ by: z.string(), atMs: z.number() }).optional(),
  resolvedAtMs: z.number().optional(),
  outbox: z.array(
    z.object({
      id: z.string(),
      kind: z.enum(['page', 'resolved']),
      key: z.string(),
      round: z.number().int(),
      level: z.number().int(),
      person: z.string().nullable(),
      channel: z.string(),
      createdAtMs: z.number(),
      nextRoundAtMs: z.number(),
      attempts: z.number().int(),
      status: z.enum(['pending', 'delivered', 'failed', 'cancelled']),
      lastError: z.string().optional(),
      deliveredAtMs: z.number().optional(),
    }),
  ),
});

const stateSchema = z.object({
  version: z.literal(1),
  alerts: z.record(z.string(), recordSchema),
  heartbeat: z.object({ lastSentAtMs: z.number().nullable() }),
});

/** What loading found: the state, and a problem when the file could not be used. */
export interface LoadedState {
  state: AlertingState;
  /** Set when a damaged file was moved aside and alerting starts empty; journal it. */
  problem?: string;
}

/** Reads and writes the state file of one state directory; saves are serialized in call order. */
export interface StateStore {
  readonly file: string;
  load(): Promise<LoadedState>;
  /** Writes a snapshot of `state` as it is now (later changes need another save). */
  save(state: AlertingState): Promise<void>;
}

/** The store for `dir` (created when missing). */
export function createStateStore(dir: string): StateStore {
  const file = join(dir, stateFileName);
  let queue: Promise<void> = Promise.resolve();
  let counter = 0;
  return {
    file,
    load: () => loadState(dir, file),
    save(state) {
      // Serialized at call time, written in call order: the file always ends at the latest call's view.
      const text = `${JSON.stringify(state)}\n`;
      const tmp = join(dir, `.${stateFileName}.${process.pid}.${counter++}.tmp`);
      const write = queue.then(() => writeAtomically(dir, file, tmp, text));
      queue = write.catch(() => undefined);
      return write;
    },
  };
}

async function loadState(dir: string, file: string): Promise<LoadedState> {
  await mkdir(dir, { recursive: true });
  await removeStaleTemporaries(dir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { state: emptyState() };
    throw new Error(`Cannot read alerting state "${file}": ${(error as Error).message}`);
  }
  let problem: string;
  try {
    const parsed = stateSchema.safeParse(JSON.parse(text));
    if (parsed.success) return { state: parsed.data as AlertingState };
    problem = parsed.error.issues[0]?.message ?? 'unexpected shape';
  } catch (error) {
    problem = `not JSON (${(error as Error).message})`;
  }
  // Starting empty pages again what was pending, which beats not starting: alerting must run.
  const aside = `${file}.corrupt-${process.pid}-${Date.now()}`;
  await rename(file, aside);
  return { state: emptyState(), problem: `alerting state "${file}" was unusable (${problem}); moved to "${aside}" and started empty` };
}

async function writeAtomically(dir: string, file: string, tmp: string, text: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(tmp, file);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  await syncDirectory(dir);
}

/** Makes the rename durable; platforms that cannot fsync a directory skip it. */
async function syncDirectory(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL') throw error;
  } finally {
    await handle?.close();
  }
}

/** Temporary files of a write that crashed before its rename; they hold nothing the file lacks. */
async function removeStaleTemporaries(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (name.startsWith(`.${stateFileName}.`) && name.endsWith('.tmp')) await rm(join(dir, name), { force: true });
  }
}
