// A postmortem draft of one incident, in the format of the postmortem Parley is built against
// (postmortem-2024-07-30.txt: title, date, time, duration, then Summary, Impact, Root Cause,
// Timeline, Resolution, Preventative Measures, Lessons Learned, Conclusion, Prepared by). What the
// journal knows is written out — the times, the alerts, who was paged and who acknowledged, the
// failover steps, the timeline; what only people know is left as a marked gap to fill in, never
// guessed. Pure: the moment of export is passed in.
import type { Incident } from './incidents-core.ts';

const utc = 'UTC';

function day(iso: string): string {
  return new Date(iso).toLocaleDateString('en-US', { timeZone: utc, year: 'numeric', month: 'long', day: 'numeric' });
}

function clock(iso: string, seconds: boolean): string {
  return new Date(iso).toLocaleTimeString('en-US', { timeZone: utc, hour: 'numeric', minute: '2-digit', ...(seconds ? { second: '2-digit' } : {}), hour12: true });
}

/** "1 hour 5 minutes", "3 minutes 12 seconds", "40 seconds". */
export function duration(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const part = (n: number, unit: string): string => `${n} ${unit}${n === 1 ? '' : 's'}`;
  const parts = hours > 0 ? [part(hours, 'hour'), ...(minutes > 0 ? [part(minutes, 'minute')] : [])] : minutes > 0 ? [part(minutes, 'minute'), ...(seconds > 0 ? [part(seconds, 'second')] : [])] : [part(seconds, 'second')];
  return parts.join(' ');
}

const gap = (what: string): string => `[To be written: ${what}]`;

/** The draft, as text. `nowIso`: when it is exported (an open incident is described up to then). */
export function renderPostmortem(incident: Incident, options: { nowIso: string; exportedBy?: string | undefined }): string {
  const end = incident.endedAt ?? options.nowIso;
  const lasted = duration(Date.parse(end) - Date.parse(incident.startedAt));
  const lines: string[] = [];
  lines.push(`Incident Postmortem Report: ${incident.title}`);
  lines.push(`Date of Incident: ${day(incident.startedAt)}`);
  lines.push(` Time of Incident: ${clock(incident.startedAt, false)} - ${incident.endedAt ? clock(incident.endedAt, false) : 'ongoing'} UTC`);
  lines.push(` Duration: ${lasted}${incident.endedAt ? '' : ' so far (the incident is still open)'}`);
  lines.push('');

  const facts: string[] = [];
  facts.push(`From ${clock(incident.startedAt, true)} to ${incident.endedAt ? clock(incident.endedAt, true) : 'the time of this draft'} UTC on ${day(incident.startedAt)}: ${incident.title}.`);
  const critical = incident.alerts.filter((a) => a.severity === 'critical');
  if (incident.alerts.length > 0) {
    facts.push(`${incident.alerts.length} alert${incident.alerts.length === 1 ? '' : 's'} fired (${critical.length} critical): ${[...new Set(incident.alerts.map((a) => a.name))].join(', ')}.`);
  }
  const automatic = incident.promotions.filter((p) => !p.planned);
  if (automatic.length > 0) facts.push(`Automatic failover: ${automatic.map((p) => `${p.node} became primary at ${clock(p.at, true)}`).join('; ')}.`);
  const planned = incident.promotions.filter((p) => p.planned);
  if (planned.length > 0) facts.push(`Operator-requested promotion: ${planned.map((p) => `${p.node} at ${clock(p.at, true)}`).join('; ')}.`);
  if (incident.duringMaintenance) facts.push('Maintenance mode was on during the incident (no automatic failover may start while it is).');
  if (incident.firstPageAt) facts.push(`On-call was first paged ${duration(Date.parse(incident.firstPageAt) - Date.parse(incident.startedAt))} after the start.`);
  else facts.push('Nobody was paged (no critical alert reached the alerting process, or no channel is configured).');
  if (incident.firstAckAt) facts.push(`${incident.acknowledgedBy ?? 'Someone'} acknowledged ${duration(Date.parse(incident.firstAckAt) - Date.parse(incident.startedAt))} after the start.`);
  else if (incident.firstPageAt) facts.push('No page was acknowledged.');

  lines.push('Summary');
  lines.push(facts.join(' '));
  lines.push('');
  lines.push('Impact');
  lines.push(`User Impact: ${gap('who could not send or receive, for how long (the app servers\' parley_errors_total and parley_database_errors_total for the incident window say how many requests failed, and on which database node)')}`);
  lines.push(`Business Impact: ${gap('support load, engagement, revenue')}`);
  lines.push(`Reputation Impact: ${gap('what users and the press saw')}`);
  lines.push('');
  lines.push('Root Cause');
  lines.push(gap('the cause, found by the responders'));
  if (incident.alerts.length > 0) {
    lines.push('Contributing Factors (what the alerts said, in order):');
    for (const alert of incident.alerts) lines.push(`${alert.name}${alert.node ? ` on ${alert.node}` : ''} (${alert.severity}): ${alert.summary || 'no summary'}`);
  }
  lines.push('');
  lines.push('Timeline');
  for (const item of incident.timeline) lines.push(`${clock(item.at, true)}: ${item.text}`);
  if (incident.endedAt) lines.push(`${clock(incident.endedAt, true)}: No critical alert active any more; the incident ends.`);
  lines.push('');
  lines.push('Resolution');
  const resolution: string[] = [];
  if (automatic.length > 0) resolution.push(`The cluster failed over automatically to ${automatic[automatic.length - 1]!.node}.`);
  const resolved = incident.alerts.filter((a) => a.resolvedAt !== null);
  if (incident.endedAt) resolution.push(`Every critical alert had resolved by ${clock(incident.endedAt, true)} UTC${resolved.length > 0 ? ` (${resolved.map((a) => `${a.name} at ${clock(a.resolvedAt!, true)}`).join(', ')})` : ''}.`);
  resolution.push(gap('what the responders did, and why it worked'));
  lines.push(resolution.join(' '));
  lines.push('');
  lines.push('Preventative Measures');
  lines.push(gap('what will be changed so this cannot happen again, each with an owner'));
  lines.push('');
  lines.push('Lessons Learned');
  lines.push(gap('what went well, what did not, where we were lucky'));
  lines.push('');
  lines.push('Conclusion');
  lines.push(gap('one paragraph'));
  lines.push(`Prepared by: [draft by \`parley incidents export ${incident.id}\`${options.exportedBy ? ` for ${options.exportedBy}` : ''}; ${gap('the author')}]`);
  lines.push(` Date: [${day(options.nowIso)}]`);
  lines.push(` Role: ${gap('the author\'s role')}`);
  return `${lines.join('\n')}\n`;
}
