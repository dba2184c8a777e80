// Incidents, the pure core: the journal (DIR/journal.jsonl, one JSON object a line, written by the
// agents, the supervisor, operators' commands and the ops process) in, incidents out. An incident
// is what a person would call one: it opens with the first critical signal — a critical alert
// firing (the ops process's rules or an agent's own), the supervisor paging that alerting went
// silent, or an automatic promotion — takes in everything relevant that happens while it is open
// (every alert's transitions, pages, acknowledgements, failover steps, operators' actions,
// maintenance; and, first, its lead-up: what operators and the cluster did in the 10 minutes
// before it opened), and ends once no critical signal has been active for `quietMs`: a critical alert
// firing again within that time belongs to the same incident, as a flapping replication link
// would. Its end is the moment the last critical signal cleared.
//
// No clock and no I/O: `nowMs` is passed in, so a journal always yields the same incidents (the
// id is the opening moment), tests replay real journals, and the CLI, the ops process and the
// status page agree. The timeline's texts are what a postmortem's timeline says (postmortem.ts).

/** One line of the journal; the fields besides `at` and `kind` depend on the kind. */
export interface JournalEntry {
  at: string;
  kind: string;
  node?: string | null;
  [field: string]: unknown;
}

/** One moment of an incident's timeline. */
export interface TimelineItem {
  at: string;
  /** Where it came from: alert, page, ack, failover, operator, maintenance, supervisor. */
  source: string;
  text: string;
}

/** An alert seen during an incident. */
export interface IncidentAlert {
  id: string;
  name: string;
  severity: string;
  node: string | null;
  summary: string;
  firedAt: string;
  resolvedAt: string | null;
  acknowledgedBy: string | null;
  acknowledgedAt: string | null;
}

export interface Incident {
  /** The opening moment, UTC, e.g. 20261124-195012: stable, sortable, typed easily. */
  id: string;
  title: string;
  state: 'open' | 'resolved';
  startedAt: string;
  /** When the last critical signal cleared (resolved incidents only). */
  endedAt: string | null;
  alerts: IncidentAlert[];
  /** The first page sent to a person, and the first acknowledgement (with who). */
  firstPageAt: string | null;
  firstAckAt: string | null;
  acknowledgedBy: string | null;
  /** Promotions, in order: which node became primary, automatically or by an operator. */
  promotions: { at: string; node: string; planned: boolean }[];
  /** Whether maintenance was on at any moment of the incident. */
  duringMaintenance: boolean;
  timeline: TimelineItem[];
}

/** What the public status page shows of an incident: no node names, no people. */
export interface PublicIncident {
  id: string;
  title: string;
  state: 'open' | 'resolved';
  startedAt: string;
  endedAt: string | null;
}

const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

// An operator's switchover or failover explains a promotion within this long after it.
const plannedWindowMs = 60_000;
// What operators and the cluster did this long before an incident opened is its lead-up (the
// maintenance that came before the failure, in the postmortem's case), told first in its timeline.
const leadUpMs = 10 * 60_000;
const leadUpSources = new Set(['operator', 'maintenance', 'failover', 'supervisor']);

/** The incident id of an opening moment. */
export function incidentId(at: string): string {
  return at.slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
}

interface Signal {
  /** Opens or keeps an incident open: the key of the critical signal, and whether it starts or ends. */
  critical?: { key: string; active: boolean; title: string };
  /** A one-shot opener (an automatic promotion): opens, but holds nothing open. */
  opens?: string;
  timeline?: TimelineItem;
}

/**
 * Reads one entry: what it means for incidents. `planned` says an operator asked for a promotion;
 * `label` names an alert id as people do ("ReplicationStopped on node2").
 */
function signalOf(entry: JournalEntry, planned: (atMs: number) => boolean, label: (alertId: string | undefined) => string): Signal {
  const node = str(entry.node) ?? null;
  const item = (source: string, text: string): TimelineItem => ({ at: entry.at, source, text });
  switch (entry.kind) {
    case 'alert': {
      // The ops process's rules: {event, id, name, severity, node, summary}.
      const name = str(entry.name);
      if (name !== undefined) {
        const event = str(entry.event);
        const severity = str(entry.severity) ?? 'warning';
        const where = str(entry.node) ? ` on ${str(entry.node)}` : '';
        const summary = str(entry.summary) ? `: ${str(entry.summary)}` : '';
        const critical = severity === 'critical' && (event === 'firing' || event === 'resolved') ? { key: `alert:${str(entry.id) ?? name}`, active: event === 'firing', title: `${name}${where}` } : undefined;
        if (event === 'firing') return { critical, timeline: item('alert', `${name} fired (${severity})${where}${summary}`) };
        if (event === 'resolved') return { critical, timeline: item('alert', `${name} resolved${where}`) };
        return {};
      }
      // An agent's own alert from the decision core: {code, severity, message}; it has no end.
      const code = str(entry.code) ?? 'alert';
      const text = `${node ?? 'an agent'} alerted ${code} (${str(entry.severity) ?? 'warning'}): ${str(entry.message) ?? ''}`.trim();
      return str(entry.severity) === 'critical' ? { opens: `${code} on ${node ?? 'an agent'}`, timeline: item('alert', text) } : { timeline: item('alert', text) };
    }
    case 'alerting-notify': {
      const notice = str(entry.notice) ?? 'page';
      const person = str(entry.person) ?? 'someone';
      const channels = Array.isArray(entry.channels) ? (entry.channels as unknown[]).filter((c) => typeof c === 'string').join(' and ') : '';
      const what = notice === 'resolved' ? 'told of the resolution' : notice === 'page' ? 'paged' : `sent a ${notice}`;
      return { timeline: item('page', `${person} ${what} about ${label(str(entry.alertId))}${channels ? ` by ${channels}` : ''}${typeof entry.level === 'number' && entry.level > 0 ? ` (escalation level ${entry.level + 1})` : ''}`) };
    }
    case 'alerting-ack':
      return { timeline: item('ack', `${str(entry.by) ?? 'someone'} acknowledged ${label(str(entry.alertId))}${str(entry.via) ? ` (${str(entry.via)})` : ''}`) };
    case 'alerting-gave-up':
      return { timeline: item('page', `gave up delivering ${str(entry.notice) ?? 'a page'} by ${str(entry.channel) ?? 'a channel'} after ${String(entry.attempts ?? '?')} attempts: ${str(entry.error) ?? ''}`.trim()) };
    case 'action': {
      const action = str(entry.action);
      if (entry.result !== 'done' && action !== 'rewind' && action !== 'handOver') return {};
      if (action === 'promote' && node !== null) {
        const atMs = Date.parse(entry.at);
        const isPlanned = planned(atMs);
        return {
          ...(isPlanned ? {} : { opens: `automatic failover to ${node}` }),
          timeline: item('failover', `${node} promoted to primary${isPlanned ? ' (asked for by an operator)' : ' (automatic failover)'}`),
        };
      }
      // The agent journals a rewind twice: how it went ({from, result: rewound | re-cloned}), then
      // the generic {result: done}; the first says more.
      if (action === 'rewind') return str(entry.from) ? { timeline: item('failover', `${node ?? 'a node'} ${entry.result === 're-cloned' ? 're-cloned' : 'rewound'} to follow ${str(entry.from)}`) } : {};
      if (action === 'handOver') return { timeline: item('failover', `${node ?? 'the primary'} stopping to hand over to ${str(entry.target) ?? 'a standby'}`) };
      if (action === 'demote') return { timeline: item('failover', `${node ?? 'a node'} demoted`) };
      return {};
    }
    case 'switchover':
      return { timeline: item('failover', `switchover to ${str(entry.to) ?? '?'}: ${str(entry.outcome) ?? ''}${str(entry.detail) ? ` (${str(entry.detail)})` : ''}`) };
    case 'failover':
      return { timeline: item('failover', `manual failover: ${str(entry.outcome) ?? ''}${str(entry.detail) ? ` (${str(entry.detail)})` : ''}`) };
    case 'operator': {
      const action = str(entry.action) ?? 'action';
      const details = [str(entry.to) ? `to ${str(entry.to)}` : '', str(entry.reason) ? `reason: ${str(entry.reason)}` : ''].filter(Boolean).join('; ');
      return { timeline: item('operator', `${str(entry.by) ?? 'an operator'} ran ${action}${details ? ` (${details})` : ''}`) };
    }
    case 'maintenance': {
      const event = str(entry.event);
      if (event === 'expired') return { timeline: item('maintenance', `maintenance expired (${str(entry.reason) ?? ''})`) };
      return {};
    }
    case 'supervisor': {
      const event = str(entry.event) ?? '';
      if (event.startsWith('fallback alert ')) {
        const active = event === 'fallback alert firing';
        return { critical: { key: 'fallback:AlertingSilent', active, title: 'AlertingSilent: the ops process went silent' }, timeline: item('supervisor', `the supervisor ${active ? 'paged' : 'resolved'} ${str(entry.name) ?? 'AlertingSilent'}${str(entry.summary) ? `: ${str(entry.summary)}` : ''}`) };
      }
      if (event === 'fallback delivery attempt') return {};
      return { timeline: item('supervisor', `${node ? `${node}: ` : ''}${event}`) };
    }
    default:
      return {};
  }
}

/**
 * The incidents of a journal, oldest first. Entries may come in any order (several processes
 * append); they are taken in time order. `quietMs`: how long no critical signal may be active
 * before an incident ends. `nowMs`: the present, which decides whether the last one has ended.
 */
export function buildIncidents(entries: readonly JournalEntry[], options: { quietMs: number; nowMs: number }): Incident[] {
  const ordered = entries
    .map((entry, index) => ({ entry, index, atMs: Date.parse(entry.at) }))
    .filter((e) => Number.isFinite(e.atMs) && typeof e.entry.kind === 'string')
    .sort((a, b) => a.atMs - b.atMs || a.index - b.index);

  const incidents: Incident[] = [];
  let current: Incident | undefined;
  const active = new Set<string>();
  let quietSinceMs: number | undefined;
  let maintenanceOn = false;
  const operatorAsks: number[] = [];
  const planned = (atMs: number): boolean => operatorAsks.some((t) => atMs >= t && atMs - t <= plannedWindowMs);
  const alertsById = new Map<string, IncidentAlert>();
  const seenPromotions = new Set<string>();
  // Alert id → its name and node, as the ops process journaled them (pages name only the id).
  const labels = new Map<string, string>();
  // The lead-up: what happened outside any incident, kept for leadUpMs.
  let recent: Array<{ atMs: number; item: TimelineItem }> = [];

  const close = (endMs: number): void => {
    if (!current) return;
    current.state = 'resolved';
    current.endedAt = new Date(endMs).toISOString();
    current = undefined;
    alertsById.clear();
    seenPromotions.clear();
  };

  for (const { entry, atMs } of ordered) {
    if (current && quietSinceMs !== undefined && active.size === 0 && atMs - quietSinceMs >= options.quietMs) close(quietSinceMs);
    if (entry.kind === 'operator') {
      const action = str(entry.action) ?? '';
      if (action === 'switchover' || action === 'failover') operatorAsks.push(atMs);
      if (action === 'maintenance start') maintenanceOn = true;
      if (action === 'maintenance stop') maintenanceOn = false;
    }
    if (entry.kind === 'maintenance' && (entry.event === 'ended' || entry.event === 'expired')) maintenanceOn = false;
    if (entry.kind === 'maintenance' && entry.event === 'acknowledged') maintenanceOn = true;

    if (entry.kind === 'alert' && str(entry.name) !== undefined && str(entry.id) !== undefined) {
      labels.set(str(entry.id)!, `${str(entry.name)}${str(entry.node) ? ` on ${str(entry.node)}` : ''}`);
    }
    const signal = signalOf(entry, planned, (id) => (id === undefined ? 'an alert' : (labels.get(id) ?? id)));
    const opening = (signal.critical?.active === true && !active.has(signal.critical.key)) || signal.opens !== undefined;
    if (!current && opening) {
      current = {
        id: incidentId(entry.at),
        title: signal.critical?.title ?? signal.opens ?? 'incident',
        state: 'open',
        startedAt: entry.at,
        endedAt: null,
        alerts: [],
        firstPageAt: null,
        firstAckAt: null,
        acknowledgedBy: null,
        promotions: [],
        duringMaintenance: maintenanceOn,
        timeline: recent.filter((r) => atMs - r.atMs <= leadUpMs).map((r) => r.item),
      };
      recent = [];
      incidents.push(current);
    }
    if (signal.critical) {
      if (signal.critical.active) active.add(signal.critical.key);
      else active.delete(signal.critical.key);
    }
    if (signal.critical?.active || signal.opens !== undefined) quietSinceMs = atMs;
    else if (signal.critical && active.size === 0) quietSinceMs = atMs;
    if (!current) {
      if (signal.timeline && leadUpSources.has(signal.timeline.source)) {
        recent.push({ atMs, item: signal.timeline });
        recent = recent.filter((r) => atMs - r.atMs <= leadUpMs);
      }
      continue;
    }

    current.duringMaintenance ||= maintenanceOn;
    if (entry.kind === 'action' && entry.action === 'promote' && entry.result === 'done') {
      // Each agent journals its own promote once; repeated lines of one node are one promotion.
      const key = `${str(entry.node)}@${entry.at}`;
      if (seenPromotions.has(key)) continue;
      seenPromotions.add(key);
      current.promotions.push({ at: entry.at, node: str(entry.node) ?? '?', planned: planned(atMs) });
    }
    if (entry.kind === 'alert' && str(entry.name) !== undefined) {
      const id = str(entry.id) ?? str(entry.name)!;
      if (entry.event === 'firing') {
        const alert: IncidentAlert = { id, name: str(entry.name)!, severity: str(entry.severity) ?? 'warning', node: str(entry.node) ?? null, summary: str(entry.summary) ?? '', firedAt: entry.at, resolvedAt: null, acknowledgedBy: null, acknowledgedAt: null };
        alertsById.set(id, alert);
        current.alerts.push(alert);
      } else if (entry.event === 'resolved') {
        const alert = alertsById.get(id);
        if (alert) alert.resolvedAt = entry.at;
      }
    }
    if (entry.kind === 'alerting-notify' && current.firstPageAt === null && entry.notice !== 'resolved') current.firstPageAt = entry.at;
    if (entry.kind === 'alerting-ack') {
      const alert = alertsById.get(str(entry.alertId) ?? '');
      if (alert && alert.acknowledgedAt === null) {
        alert.acknowledgedAt = entry.at;
        alert.acknowledgedBy = str(entry.by) ?? null;
      }
      if (current.firstAckAt === null) {
        current.firstAckAt = entry.at;
        current.acknowledgedBy = str(entry.by) ?? null;
      }
    }
    if (signal.timeline) current.timeline.push(signal.timeline);
  }
  if (current && quietSinceMs !== undefined && active.size === 0 && options.nowMs - quietSinceMs >= options.quietMs) close(quietSinceMs);
  return incidents;
}

/** What the public status page shows. */
export function publicIncident(incident: Incident): PublicIncident {
  // Alert names say what broke without naming machines; the rest stays with the operators.
  const title = incident.title.replace(/ on node\S*/g, '').replace(/ to node\S*/g, '');
  return { id: incident.id, title, state: incident.state, startedAt: incident.startedAt, endedAt: incident.endedAt };
}
