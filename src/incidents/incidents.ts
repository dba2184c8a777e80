// incidents/: the journal read as incidents (incidents-core.ts, pure), the postmortem draft
// (postmortem-core.ts, pure) and the one piece of I/O between them: reading DIR/journal.jsonl.
// The CLI reads the file itself (it works while Parley is down too); the ops process serves the
// same incidents to the app servers' public status page.
import { readFileSync, statSync } from 'node:fs';
import { ParleyError } from '../errors/errors.ts';
import { buildIncidents, type Incident, type JournalEntry } from './incidents-core.ts';
import { duration } from './postmortem-core.ts';

export { buildIncidents, incidentId, publicIncident, type Incident, type IncidentAlert, type JournalEntry, type PublicIncident, type TimelineItem } from './incidents-core.ts';
export { duration, renderPostmortem } from './postmortem-core.ts';

/**
 * How long no critical alert may be active before an incident ends: a critical alert firing again
 * within this time (a flapping link, a second failover) is the same incident.
 */
export const incidentQuietMs = 5 * 60_000;

/** The journal's entries; a line that is not a JSON object with `at` and `kind` (a torn last line) is skipped. */
export function parseJournal(text: string): JournalEntry[] {
  const entries: JournalEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const value = JSON.parse(line) as unknown;
      if (typeof value === 'object' && value !== null && typeof (value as JournalEntry).at === 'string' && typeof (value as JournalEntry).kind === 'string') entries.push(value as JournalEntry);
    } catch {
      // A line being written as we read, or damaged: the others still count.
    }
  }
  return entries;
}

/** The incidents of the journal file; none when it does not exist yet. */
export function readIncidents(journalFile: string, nowMs: number): Incident[] {
  let text: string;
  try {
    text = readFileSync(journalFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new ParleyError('storage_unavailable', `cannot read the journal ${journalFile}: ${(error as Error).message}`);
  }
  return buildIncidents(parseJournal(text), { quietMs: incidentQuietMs, nowMs });
}

/** Incidents of one journal file, parsed again only when the file has changed (the ops process asks often). */
export function incidentReader(journalFile: string): (nowMs: number) => Incident[] {
  let seen: { size: number; mtimeMs: number } | undefined;
  let entries: JournalEntry[] = [];
  return (nowMs) => {
    let stat: { size: number; mtimeMs: number } | undefined;
    try {
      stat = statSync(journalFile);
    } catch {
      stat = undefined;
    }
    if (!stat) entries = [];
    else if (!seen || stat.size !== seen.size || stat.mtimeMs !== seen.mtimeMs) entries = parseJournal(readFileSync(journalFile, 'utf8'));
    seen = stat;
    return buildIncidents(entries, { quietMs: incidentQuietMs, nowMs });
  };
}

/** One incident by id; a one-line 404 naming the ids there are. */
export function findIncident(incidents: readonly Incident[], id: string): Incident {
  const found = incidents.find((incident) => incident.id === id);
  if (found) return found;
  const known = incidents.slice(-5).map((incident) => incident.id);
  throw new ParleyError('not_found', `no incident "${id}"${known.length > 0 ? `; the latest: ${known.join(', ')}` : '; the journal holds none'}`);
}

/** `parley incidents`: one line each, newest first. */
export function formatIncidents(incidents: readonly Incident[], nowMs: number): string {
  if (incidents.length === 0) return 'no incidents in the journal';
  const rows = [...incidents].reverse().map((incident) => {
    const lasted = duration((incident.endedAt ? Date.parse(incident.endedAt) : nowMs) - Date.parse(incident.startedAt));
    return [incident.id, incident.state, incident.startedAt.replace('T', ' ').slice(0, 19), incident.endedAt ? lasted : `${lasted} so far`, incident.title];
  });
  const header = ['ID', 'STATE', 'STARTED (UTC)', 'LASTED', 'TITLE'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** `parley incidents show ID`: the facts, the alerts and the timeline. */
export function formatIncident(incident: Incident, nowMs: number): string {
  const lasted = duration((incident.endedAt ? Date.parse(incident.endedAt) : nowMs) - Date.parse(incident.startedAt));
  const since = (iso: string | null): string => (iso ? `${iso} (+${duration(Date.parse(iso) - Date.parse(incident.startedAt))})` : 'never');
  const lines = [
    `${incident.id}: ${incident.title}`,
    `state: ${incident.state}; started ${incident.startedAt}; ${incident.endedAt ? `ended ${incident.endedAt}; lasted ${lasted}` : `open for ${lasted}`}`,
    `first page: ${since(incident.firstPageAt)}; first acknowledgement: ${since(incident.firstAckAt)}${incident.acknowledgedBy ? ` by ${incident.acknowledgedBy}` : ''}`,
    `maintenance on during it: ${incident.duringMaintenance ? 'yes' : 'no'}; promotions: ${incident.promotions.length === 0 ? 'none' : incident.promotions.map((p) => `${p.node} at ${p.at}${p.planned ? ' (operator)' : ' (automatic)'}`).join(', ')}`,
    '',
    'alerts:',
    ...(incident.alerts.length === 0 ? ['  none'] : incident.alerts.map((a) => `  ${a.name}${a.node ? ` on ${a.node}` : ''} (${a.severity}): fired ${a.firedAt}, ${a.resolvedAt ? `resolved ${a.resolvedAt}` : 'not resolved'}${a.acknowledgedBy ? `, acknowledged by ${a.acknowledgedBy}` : ''}`)),
    '',
    'timeline:',
    ...incident.timeline.map((item) => `  ${item.at}  ${item.text}`),
  ];
  return lines.join('\n');
}
