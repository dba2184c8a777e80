// Who is on call, and who must be told about an alert now: the pure core of alerting/.
//
// `escalate(alert, context)` takes an alert, its policy, the rota, the acknowledgements, what has
// already been paged and `now`, and returns the notifications due, when to look again and why.
// Like failover/decide.ts it performs no I/O and reads no clock (time comes in as `now`), so the
// property tests drive it through thousands of schedules without waiting; alerting.ts is the shell
// that persists the decisions and hands them to the channels.
//
// Timing: a policy's levels are reached at `sinceMs + Σ afterMinutes` (each level counts from the
// one before it); after the last level the policy starts again after `repeat.afterMinutes`, at most
// `repeat.times` more rounds. Each (round, level) slot is paged at most once, so calling again at
// the same `now` with the recorded state pages nobody twice. A shell that was away for a while
// catches up by paging each level once, at its latest due round, rather than replaying every round.
import type { PolicyConfig, RotaConfig } from './config-schema.ts';
import { NEXT_ON_CALL, ON_CALL, weekdays, type Ack, type Alert } from './types.ts';

const minuteMs = 60_000;
const dayMs = 24 * 60 * minuteMs;
const weekMs = 7 * dayMs;

/** One page already decided (and handed to delivery): the escalation position is the set of these. */
export interface PageRecord {
  key: string;
  round: number;
  level: number;
  person: string | null;
  channels: string[];
  atMs: number;
}

/** What escalation remembers about one firing episode of an alert; persisted by store.ts. */
export interface EscalationState {
  /** When alerting first saw this episode firing; escalation is timed from here. */
  sinceMs: number;
  pages: PageRecord[];
  /** Whether the people paged have been told of the resolution. */
  resolutionSent: boolean;
}

/** Someone (or, with `person: null`, a channel named directly) to notify, and through which channels. */
export interface Recipient {
  person: string | null;
  channels: string[];
}

/** One notification escalation decided: who, through which channels, and which slot it fills. */
export interface Notification extends Recipient {
  kind: 'page' | 'resolved';
  /** Unique within the episode: `page:<round>:<level>:<person>` or `resolved:<person>`. */
  key: string;
  round: number;
  level: number;
}

/** Everything escalation looks at besides the alert itself. */
export interface EscalationContext {
  /** The policy for the alert's severity (see `policyFor`); undefined means nobody is paged. */
  policy: PolicyConfig | undefined;
  rota: RotaConfig;
  /** Names of every configured channel: `on-call` with an empty rota means all of them. */
  channels: readonly string[];
  acks: Readonly<Record<string, Ack>>;
  state: EscalationState;
  now: number;
}

/** The decision: notify these now, look again at `nextAt` (null: nothing scheduled), and why. */
export interface EscalationResult {
  notify: Notification[];
  nextAt: number | null;
  /** True when nothing more will be sent unless the alert changes (resolves, fires again). */
  done: boolean;
  reason: string;
}

/** A fresh escalation state for an episode first seen firing at `sinceMs`. */
export function startEscalation(sinceMs: number): EscalationState {
  return { sinceMs, pages: [], resolutionSent: false };
}

/** The policy that handles an alert: the first that lists its severity. */
export function policyFor(alert: Pick<Alert, 'severity'>, policies: readonly PolicyConfig[]): PolicyConfig | undefined {
  return policies.find((policy) => policy.severities.includes(alert.severity));
}

/** Decides who must be notified about `alert` at `context.now`; see the file header. */
export function escalate(alert: Alert, context: EscalationContext): EscalationResult {
  const { policy, state, now } = context;
  if (alert.status === 'resolved') return resolve(state);
  if (policy === undefined) {
    return { notify: [], nextAt: null, done: true, reason: `no policy handles severity ${alert.severity}; nobody is paged` };
  }
  const ack = context.acks[alert.id];
  if (ack !== undefined) {
    return { notify: [], nextAt: null, done: true, reason: `acknowledged by ${ack.by}; escalation stopped` };
  }
  const schedule = scheduleOf(policy);
  const paged = new Set(state.pages.map((page) => slotOf(page.round, page.level)));
  const onCall = onCallAt(context.rota, now);
  const nextOnCall = nextOnCallAt(context.rota, now);
  const notify: Notification[] = [];
  const said: string[] = [];
  policy.levels.forEach((level, k) => {
    const round = latestDueRound(schedule, state.sinceMs, k, now);
    if (round < 0 || paged.has(slotOf(round, k))) return;
    const recipients = recipientsFor(level.notify, { rota: context.rota, channels: context.channels, onCall, nextOnCall });
    if (recipients.length === 0) {
      said.push(`level ${k} has nobody to page`);
      return;
    }
    for (const recipient of recipients) {
      notify.push({ kind: 'page', key: `page:${round}:${k}:${recipient.person ?? '-'}`, round, level: k, ...recipient });
    }
    said.push(`paging level ${k}${round > 0 ? ` (round ${round + 1})` : ''}: ${recipients.map(describeRecipient).join(', ')}`);
  });
  const nextAt = nextDueAt(schedule, state.sinceMs, now);
  if (said.length === 0) said.push(nextAt === null ? 'every level paged; waiting for an acknowledgement' : 'nothing due');
  return { notify, nextAt, done: nextAt === null, reason: said.join('; ') };
}

/** The state after the notifications of one decision were handed to delivery. */
export function recordNotifications(state: EscalationState, notify: readonly Notification[], now: number): EscalationState {
  const pages = notify
    .filter((n) => n.kind === 'page')
    .map((n) => ({ key: n.key, round: n.round, level: n.level, person: n.person, channels: [...n.channels], atMs: now }));
  return {
    sinceMs: state.sinceMs,
    pages: [...state.pages, ...pages],
    resolutionSent: state.resolutionSent || notify.some((n) => n.kind === 'resolved'),
  };
}

/** Resolution tells everyone who was paged, once, through the channels they were paged on. */
function resolve(state: EscalationState): EscalationResult {
  if (state.resolutionSent) return { notify: [], nextAt: null, done: true, reason: 'resolved; the people paged were told' };
  if (state.pages.length === 0) return { notify: [], nextAt: null, done: true, reason: 'resolved before anyone was paged' };
  const byPerson = new Map<string, Notification>();
  for (const page of state.pages) {
    const id = page.person ?? '-';
    const known = byPerson.get(id);
    if (known === undefined) {
      byPerson.set(id, { kind: 'resolved', key: `resolved:${id}`, round: page.round, level: page.level, person: page.person, channels: [...page.channels] });
    } else {
      known.channels = [...new Set([...known.channels, ...page.channels])];
      known.level = Math.max(known.level, page.level);
      known.round = Math.max(known.round, page.round);
    }
  }
  const notify = [...byPerson.values()];
  return { notify, nextAt: null, done: true, reason: `resolved; telling ${notify.map(describeRecipient).join(', ')}` };
}

/** When each level falls due, relative to the start of a round, and how rounds repeat. */
interface Schedule {
  offsetsMs: number[];
  cycleMs: number;
  rounds: number;
}

function scheduleOf(policy: PolicyConfig): Schedule {
  const offsetsMs: number[] = [];
  let total = 0;
  for (const level of policy.levels) {
    total += level.afterMinutes * minuteMs;
    offsetsMs.push(total);
  }
  const cycleMs = total + policy.repeat.afterMinutes * minuteMs;
  // The schema makes repeat.afterMinutes positive; a zero cycle would page every round at once.
  if (!(cycleMs > 0)) throw new Error(`escalation policy "${policy.name}" has a zero-length cycle`);
  return { offsetsMs, cycleMs, rounds: 1 + policy.repeat.times };
}

function slotOf(round: number, level: number): string {
  return `${round}:${level}`;
}

/** The latest round in which level k is due at `now`, or -1 when it is not due yet. */
function latestDueRound(schedule: Schedule, sinceMs: number, k: number, now: number): number {
  const first = sinceMs + schedule.offsetsMs[k]!;
  if (now < first) return -1;
  return Math.min(schedule.rounds - 1, Math.floor((now - first) / schedule.cycleMs));
}

/** The earliest slot that falls due after `now`, or null when every round has been reached. */
function nextDueAt(schedule: Schedule, sinceMs: number, now: number): number | null {
  let next: number | null = null;
  schedule.offsetsMs.forEach((offset, k) => {
    const round = latestDueRound(schedule, sinceMs, k, now) + 1;
    if (round >= schedule.rounds) return;
    const at = sinceMs + round * schedule.cycleMs + offset;
    if (next === null || at < next) next = at;
  });
  return next;
}

function describeRecipient(recipient: Recipient): string {
  return `${recipient.person ?? 'channels'} (${recipient.channels.join(', ')})`;
}

/** Who a level's targets mean, given who is on call: see `recipientsFor`. */
export interface TargetContext {
  rota: RotaConfig;
  channels: readonly string[];
  onCall: string | null;
  nextOnCall: string | null;
}

/**
 * The recipients of a level's targets: `on-call` and `next-on-call` are people of the rota (with
 * an empty rota, every channel, so a section with only channels still reaches someone), a name of
 * the rota is that person with their channels, any other name a channel. A channel that already
 * reaches a person of the level is not sent a second, person-less copy.
 */
export function recipientsFor(targets: readonly string[], context: TargetContext): Recipient[] {
  const people = new Map(context.rota.people.map((p) => [p.name, p]));
  const byPerson = new Map<string, Recipient>();
  const direct: string[] = [];
  const addPerson = (name: string | null): void => {
    if (name === null) {
      direct.push(...context.channels);
      return;
    }
    const person = people.get(name);
    if (person === undefined) return;
    const known = byPerson.get(name);
    byPerson.set(name, { person: name, channels: [...new Set([...(known?.channels ?? []), ...person.channels])] });
  };
  for (const target of targets) {
    if (target === ON_CALL) addPerson(context.onCall);
    else if (target === NEXT_ON_CALL) addPerson(context.nextOnCall);
    else if (people.has(target)) addPerson(target);
    else if (context.channels.includes(target)) direct.push(target);
  }
  const recipients = [...byPerson.values()];
  const covered = new Set(recipients.flatMap((r) => r.channels));
  const rest = [...new Set(direct)].filter((channel) => !covered.has(channel));
  if (rest.length > 0) recipients.push({ person: null, channels: rest });
  return recipients;
}

/** One shift of the rota: who holds it by schedule, and when it starts and ends. */
export interface Shift {
  index: number;
  person: string | null;
  startMs: number;
  endMs: number;
}

/** The first handoff at or after `rota.since`: the start of shift 0 (the first person's). */
export function firstHandoffMs(rota: RotaConfig): number {
  const since = Date.parse(rota.since);
  const day = new Date(since);
  const [hours, minutes] = rota.handoff.at.split(':').map(Number) as [number, number];
  let at = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), hours, minutes);
  if (rota.handoff.every === 'week') {
    const wanted = weekdays.indexOf(rota.handoff.weekday);
    at += ((wanted - new Date(at).getUTCDay() + 7) % 7) * dayMs;
    if (at < since) at += weekMs;
  } else if (at < since) {
    at += dayMs;
  }
  return at;
}

/** The scheduled shift at `nowMs` (overrides not applied); people take shifts round robin. */
export function shiftAt(rota: RotaConfig, nowMs: number): Shift {
  const periodMs = rota.handoff.every === 'week' ? weekMs : dayMs;
  const first = firstHandoffMs(rota);
  const index = Math.floor((nowMs - first) / periodMs);
  const count = rota.people.length;
  const person = count === 0 ? null : rota.people[((index % count) + count) % count]!.name;
  return { index, person, startMs: first + index * periodMs, endMs: first + (index + 1) * periodMs };
}

/** Who is on call at `nowMs`: the last override covering it, else the scheduled shift's person. */
export function onCallAt(rota: RotaConfig, nowMs: number): string | null {
  for (let i = rota.overrides.length - 1; i >= 0; i--) {
    const override = rota.overrides[i]!;
    if (Date.parse(override.from) <= nowMs && nowMs < Date.parse(override.to)) return override.person;
  }
  return shiftAt(rota, nowMs).person;
}

/** Who takes the scheduled shift after the one at `nowMs` (the backup); overrides do not move it. */
export function nextOnCallAt(rota: RotaConfig, nowMs: number): string | null {
  const shift = shiftAt(rota, nowMs);
  return shiftAt(rota, shift.endMs).person;
}
