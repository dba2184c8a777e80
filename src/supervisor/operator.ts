// What every operator command (`maintenance`, `switchover`, `failover`) shares: who runs it, a
// required reason, the lease store of the running `parley up`, and its line in the journal.
import { appendFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { ParleyError } from '../errors/errors.ts';
import { createLocalLeaseClient, type LeaseStore } from '../failover/failover.ts';
import { requireRunning } from './control.ts';
import { readJson, statePaths, type LeaseFile } from './state.ts';

/** Who runs this command, for the record and the journal: OS user at host. */
export function operatorName(): string {
  let user = process.env.USER ?? 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (containers): keep $USER
  }
  return `${user}@${hostname()}`;
}

/** The trimmed `--reason`, or a one-line usage error with `example`. */
export function requireReason(reason: string | undefined, example: string): string {
  const text = (reason ?? '').trim();
  if (text === '') throw new ParleyError('cli_usage', `--reason: say why, e.g. --reason "${example}"; it goes to the journal`);
  return text;
}

/** A client of the lease store of the `up` running in DIR (one-line error when none runs). */
export function openLeaseStore(dir: string, timeoutMs = 2000): LeaseStore {
  requireRunning(dir);
  const file = readJson<LeaseFile>(statePaths(dir).leaseFile, 'the lease store address');
  return createLocalLeaseClient({ url: file.url, token: file.token, timeoutMs });
}

/**
 * Appends an operator action to DIR/journal.jsonl. The journal is for people: a full disk must not
 * undo the action (the agents journal what they do about it too).
 */
export function journalOperator(dir: string, detail: Record<string, unknown>): void {
  try {
    appendFileSync(statePaths(dir).journalFile, `${JSON.stringify({ at: new Date().toISOString(), node: null, kind: 'operator', ...detail })}\n`);
  } catch {
    // see above
  }
}
