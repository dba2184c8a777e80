// `parley alerts [--json]` and `parley alerts ack ID`: they ask the ops process of the `up` running
// in DIR (DIR/ops.json says where, and holds the token its mutating routes need).
import { existsSync } from 'node:fs';
import { ParleyError } from '../errors/errors.ts';
import type { AlertListing } from '../ops/ops.ts';
import { readJson, statePaths, type OpsFile } from './state.ts';
import { requireRunning } from './control.ts';

export type { AlertListing } from '../ops/ops.ts';

const requestTimeoutMs = 5000;

function opsOf(dir: string): OpsFile {
  requireRunning(dir);
  const paths = statePaths(dir);
  if (!existsSync(paths.opsFile)) {
    throw new ParleyError('storage_unavailable', `the ops process of ${paths.dir} is not running (no ops.json); see ${paths.logsDir}/ops.log`);
  }
  return readJson<OpsFile>(paths.opsFile, 'the ops process address');
}

async function call<T>(ops: OpsFile, path: string, init: RequestInit = {}): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`${ops.url}${path}`, { ...init, signal: AbortSignal.timeout(requestTimeoutMs) });
  } catch (error) {
    throw new ParleyError('storage_unavailable', `the ops process at ${ops.url} did not answer within ${requestTimeoutMs / 1000} s (${(error as Error).message})`);
  }
  const body = (await response.json().catch(() => ({}))) as T & { detail?: string; code?: string };
  if (!response.ok) {
    const code = response.status === 404 ? 'not_found' : response.status === 400 || response.status === 422 ? 'validation_failed' : 'internal';
    throw new ParleyError(code, body.detail ?? `the ops process answered ${response.status}`);
  }
  return body;
}

/** Firing, pending and recently resolved alerts, firing first. */
export async function readAlerts(options: { dir: string }): Promise<AlertListing[]> {
  const { alerts } = await call<{ alerts: AlertListing[] }>(opsOf(options.dir), '/v1/ops/alerts');
  return alerts;
}

/** Firing alerts, or null when the ops process cannot be asked (status still answers). */
export async function firingAlerts(dir: string): Promise<AlertListing[] | null> {
  try {
    return (await readAlerts({ dir })).filter((a) => a.status === 'firing');
  } catch {
    return null;
  }
}

/** Acknowledges an alert: escalation stops; journaled with who and when. */
export async function ackAlert(options: { dir: string; id: string; by: string }): Promise<{ id: string; by: string; at: string; already: boolean }> {
  const ops = opsOf(options.dir);
  return call(ops, `/v1/ops/alerts/${encodeURIComponent(options.id)}/ack`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ops.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ by: options.by }),
  });
}

/** The human table of `parley alerts`. */
export function formatAlerts(alerts: readonly AlertListing[]): string {
  if (alerts.length === 0) return 'no alerts (firing, pending or resolved in the last hour)';
  return alerts
    .map((a) => {
      const when = a.status === 'resolved' ? `resolved ${a.endsAt}` : a.status === 'firing' ? `since ${a.startsAt}` : `pending since ${a.activeAt}`;
      const ack = a.ack ? `, acknowledged by ${a.ack.by}` : '';
      return `${a.status.toUpperCase().padEnd(8)} ${a.severity.padEnd(8)} ${a.name}${a.node ? ` (${a.node})` : ''} — ${a.summary} [${when}${ack}; id ${a.id}]`;
    })
    .join('\n');
}
