// The entry file of alerting/: the imperative shell around the pure escalation core.
//
// `createAlerting()` loads the persisted state and returns an object the ops process drives:
//   onTransition(alert)       an alert fired or resolved (from the monitor's evaluator);
//   receiveAlertmanager(body) the same, for an Alertmanager webhook v4 body (issue 8 point 7);
//   tick(now)                 escalates what is due and starts the retries that are due;
//   ack(id, by)               a person took the alert: escalation stops;
//   heartbeat(now)            tells the dead-man's switch that the alerting path is alive;
//   list()                    what is firing, who was paged, what is still being delivered.
//
// Every decision is made by `escalate()`, recorded in the state synchronously (so two callers in
// the same tick cannot both page), saved, and only then handed to the channels; deliveries run in
// the background, each channel on its own, and their outcomes are saved as they come. A restart
// resumes from the file: pages decided but not delivered are retried, pages delivered are not
// decided again.
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { z } from 'zod';
import { ParleyError } from '../errors/errors.ts';
import { ackLink, verifyAck, type SignedAck } from './ack.ts';
import { createHeartbeatSender, createSender } from './channels.ts';
import type { AlertingConfig } from './config-schema.ts';
import { deliverAll, deliverWithRetries, messageOf, type DeliveryJob, type DeliveryResult, type Sender } from './deliver.ts';
import { escalate, policyFor, recordNotifications, startEscalation, type Notification, type PageRecord } from './escalation.ts';
import { createStateStore, type AlertRecord, type AlertingState, type OutboxEntry } from './store.ts';
import { severities, type Ack, type Alert, type AlertingJournal, type Notice, type Severity } from './types.ts';

// What other folders need of alerting/, reached through this entry file only (ARCHITECTURE.md).
export { alertingConfigSchema, checkAlertingConfig, type AlertingConfig, type AlertingConfigInput } from './config-schema.ts';
export { ackLink, parseAckLink, verifyAck, type SignedAck } from './ack.ts';
export { alertmanagerPayload, type AlertmanagerWebhook } from './channels.ts';
export { sendFallback } from './fallback.ts';
export type { Ack, Alert, AlertingEvent, AlertingJournal, Severity } from './types.ts';

/** Resolved episodes kept for `list()` after they are fully delivered. */
const resolvedKeptMs = 24 * 3_600_000;
/** At most this many resolved episodes are kept; firing ones are never dropped. */
const resolvedKeptMax = 1000;
/** Alerts accepted in one Alertmanager body (its own default max is unbounded; ours is not). */
const alertmanagerAlertsMax = 1000;

/** What `createAlerting` needs. */
export interface AlertingOptions {
  config: AlertingConfig;
  /** Directory of the persisted state (created when missing). */
  stateDir: string;
  journal: AlertingJournal;
  /** The clock for moments not given as arguments (transitions, acks, delivery outcomes). */
  now?: () => number;
  /** Uniform in [0, 1), for backoff jitter. */
  random?: () => number;
}

/** What one decision did for one alert. */
export interface StepReport {
  alertId: string;
  notified: Notification[];
  reason: string;
}

/** What one tick did. */
export interface TickReport {
  steps: StepReport[];
  /** Outbox entries whose retry round started. */
  retried: number;
}

/** One alert as `list()` shows it. */
export interface AlertView {
  alert: Alert;
  ack?: Ack;
  /** When alerting first saw this episode firing (ISO). */
  since: string;
  pages: PageRecord[];
  deliveries: { channel: string; notice: string; status: OutboxEntry['status']; attempts: number; lastError?: string }[];
  /** When the next escalation level falls due (ISO), or null. */
  nextEscalationAt: string | null;
}

/** The outcome of an acknowledgement. */
export interface AckReport {
  alertId: string;
  ack: Ack;
  /** True when the alert had been acknowledged already (the first ack stands). */
  already: boolean;
}

/** The outcome of a heartbeat call. */
export interface HeartbeatReport {
  sent: boolean;
  ok?: boolean;
  error?: string;
  reason: string;
}

/** The alerting shell; see the file header. */
export interface Alerting {
  onTransition(alert: Alert): Promise<StepReport>;
  receiveAlertmanager(body: unknown): Promise<{ accepted: number; steps: StepReport[] }>;
  tick(now: number): Promise<TickReport>;
  ack(alertId: string, by: string): Promise<AckReport>;
  /** Acknowledges through a signed link (`parseAckLink`); refuses a forged or expired one. */
  ackWithLink(signed: SignedAck): Promise<AckReport>;
  list(): AlertView[];
  heartbeat(now: number): Promise<HeartbeatReport>;
  /** Resolves when no delivery or save is in progress (tests, graceful shutdown). */
  idle(): Promise<void>;
  /** Stops retrying, waits for running work, saves. Pending deliveries resume after a restart. */
  close(): Promise<void>;
}

/** Text longer than this is cut rather than refused: a page must never fail for its length. */
const textMaxChars = 4000;
const text = z.string().transform((value) => value.slice(0, textMaxChars));

/**
 * What onTransition accepts. Deliberately lenient (unknown fields dropped, long text cut): the
 * only alerts refused are those that cannot be handled at all, since a refused alert pages nobody.
 */
const alertSchema = z.object({
  id: z.string().min(1).max(1024),
  name: text.pipe(z.string().min(1)),
  severity: z.enum(severities),
  node: text,
  summary: text,
  startsAt: z.iso.datetime({ offset: true }),
  endsAt: z.iso.datetime({ offset: true }).optional(),
  status: z.enum(['firing', 'resolved']),
  labels: z.record(z.string(), text).optional(),
});

/** Loads the state in `stateDir` and returns the shell; call `tick()` soon to resume pending work. */
export async function createAlerting(options: AlertingOptions): Promise<Alerting> {
  const { config } = options;
  const clock = options.now ?? Date.now;
  const store = createStateStore(options.stateDir);
  const loaded = await store.load();
  const state: AlertingState = loaded.state;
  const senders = new Map<string, Sender>(config.channels.map((c) => [c.name, createSender(c, config.delivery)]));
  const channelNames = config.channels.map((c) => c.name);
  const running = new Set<Promise<unknown>>();
  const inFlight = new Set<string>();
  /** Abort controllers of page deliveries in progress, per alert, so an ack stops their retries. */
  const pageRounds = new Map<string, Set<AbortController>>();
  const shutdown = new AbortController();
  // Every delivery round in progress listens here (one per alert and notice being delivered, so a
  // few dozen alerts with a channel down pass Node's default of 10 and warn of a leak that is none).
  setMaxListeners(0, shutdown.signal);

  const journal: AlertingJournal = (event) => {
    try {
      options.journal(event);
    } catch {
      // The journal is a record, not a gate: a failing journal never stops a page.
    }
  };
  if (loaded.problem !== undefined) journal({ kind: 'state', atMs: clock(), problem: loaded.problem });

  function track<T>(promise: Promise<T>): Promise<T> {
    running.add(promise);
    void promise.finally(() => running.delete(promise)).catch(() => undefined);
    return promise;
  }

  /** Saves the state; a failed save is journaled, never thrown: the page goes out regardless. */
  function persist(): Promise<void> {
    return track(
      store.save(state).catch((error: unknown) => {
        journal({ kind: 'state', atMs: clock(), problem: `cannot save alerting state to "${store.file}": ${messageOf(error)}` });
      }),
    );
  }

  function assertOpen(action: string): void {
    if (shutdown.signal.aborted) throw new Error(`Cannot ${action}: alerting is closed`);
  }

  /** What the pure core says of one record at `now`. */
  function escalateAt(record: AlertRecord, now: number) {
    return escalate(record.alert, {
      policy: policyFor(record.alert, config.policies),
      rota: config.rota,
      channels: channelNames,
      acks: record.ack ? { [record.alert.id]: record.ack } : {},
      state: record.escalation,
      now,
    });
  }

  /** Runs escalation for one record at `now`, records its decision and queues its deliveries. */
  function decide(record: AlertRecord, now: number): { report: StepReport; entries: OutboxEntry[] } {
    const result = escalateAt(record, now);
    const report = { alertId: record.alert.id, notified: result.notify, reason: result.reason };
    if (result.notify.length === 0) return { report, entries: [] };
    record.escalation = recordNotifications(record.escalation, result.notify, now);
    const entries: OutboxEntry[] = [];
    for (const notification of result.notify) {
      journal({
        kind: 'notify',
        alertId: record.alert.id,
        notice: notification.kind,
        level: notification.level,
        round: notification.round,
        person: notification.person,
        channels: notification.channels,
        atMs: now,
        reason: result.reason,
      });
      for (const channel of notification.channels) {
        if (!senders.has(channel)) continue;
        entries.push({
          id: `${notification.key}/${channel}`,
          kind: notification.kind,
          key: notification.key,
          round: notification.round,
          level: notification.level,
          person: notification.person,
          channel,
          createdAtMs: now,
          nextRoundAtMs: now,
          attempts: 0,
          status: 'pending',
        });
      }
    }
    record.outbox.push(...entries);
    return { report, entries };
  }

  function noticeFor(record: AlertRecord, entry: OutboxEntry): Notice {
    const notice: Notice = {
      kind: entry.kind,
      key: entry.key,
      alert: record.alert,
      level: entry.level,
      person: entry.person,
      externalUrl: config.externalUrl,
    };
    if (entry.kind === 'page' && config.ackSecret !== '') {
      const grant = { alertId: record.alert.id, person: entry.person ?? entry.channel, expiresAtMs: clock() + config.ackLinkTtlMs };
      notice.ackUrl = ackLink(config.externalUrl, grant, config.ackSecret);
    }
    return notice;
  }

  /** Starts one round of attempts for pending entries of one record; each channel settles alone. */
  function startRound(record: AlertRecord, entries: readonly OutboxEntry[]): number {
    const alertId = record.alert.id;
    const ready = entries.filter((e) => e.status === 'pending' && !inFlight.has(flightKey(record, e)));
    if (ready.length === 0 || shutdown.signal.aborted) return 0;
    const controller = new AbortController();
    const onShutdown = (): void => controller.abort();
    shutdown.signal.addEventListener('abort', onShutdown, { once: true });
    const pages = ready.some((e) => e.kind === 'page');
    if (pages) {
      const set = pageRounds.get(alertId) ?? new Set();
      set.add(controller);
      pageRounds.set(alertId, set);
    }
    const byNotice = new Map<Notice, OutboxEntry>();
    const jobs: DeliveryJob[] = ready.map((entry) => {
      inFlight.add(flightKey(record, entry));
      const notice = noticeFor(record, entry);
      byNotice.set(notice, entry);
      return { sender: senders.get(entry.channel)!, notice };
    });
    const round = deliverAll(jobs, {
      ...config.delivery,
      ...(options.random ? { random: options.random } : {}),
      signal: controller.signal,
      journal: (attempt) => journal({ kind: 'attempt', ...attempt }),
      onResult: (job, result) => {
        const entry = byNotice.get(job.notice)!;
        inFlight.delete(flightKey(record, entry));
        settle(record, entry, result);
        void persist();
      },
    }).finally(() => {
      shutdown.signal.removeEventListener('abort', onShutdown);
      pageRounds.get(alertId)?.delete(controller);
    });
    void track(round);
    return ready.length;
  }

  /** Records how a round on one channel ended: delivered, retry later, or give up. */
  function settle(record: AlertRecord, entry: OutboxEntry, result: DeliveryResult): void {
    const now = clock();
    entry.attempts += result.attempts;
    if (result.ok) {
      entry.status = 'delivered';
      entry.deliveredAtMs = now;
      delete entry.lastError;
      return;
    }
    if (result.error !== undefined) entry.lastError = result.error;
    if (entry.status !== 'pending') return; // cancelled by an ack or a resolution meanwhile
    if (result.cancelled) {
      entry.nextRoundAtMs = now; // stopped by close(): due at once after a restart
      return;
    }
    if (now - entry.createdAtMs >= config.delivery.giveUpAfterMs) {
      entry.status = 'failed';
      journal({ kind: 'gave-up', alertId: record.alert.id, channel: entry.channel, notice: entry.key, attempts: entry.attempts, atMs: now, error: entry.lastError ?? 'unknown' });
      return;
    }
    entry.nextRoundAtMs = now + config.delivery.maxBackoffMs;
  }

  /** Pages still waiting for delivery are pointless once someone acknowledged or it resolved. */
  function cancelPages(record: AlertRecord): void {
    for (const entry of record.outbox) {
      if (entry.kind === 'page' && entry.status === 'pending') entry.status = 'cancelled';
    }
    for (const controller of pageRounds.get(record.alert.id) ?? []) controller.abort();
  }

  async function onTransition(input: Alert): Promise<StepReport> {
    assertOpen(`take alert "${input.id}"`);
    const parsed = alertSchema.safeParse(input);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'alert'}: ${i.message}`);
      throw new ParleyError('validation_failed', `Cannot take alert "${String(input?.id)}": ${problems[0]}`, { details: problems });
    }
    const alert = parsed.data as Alert;
    const now = clock();
    const known = state.alerts[alert.id];
    let record: AlertRecord;
    if (alert.status === 'firing') {
      if (known === undefined || known.alert.status === 'resolved') {
        record = { alert, escalation: startEscalation(now), outbox: [] };
        state.alerts[alert.id] = record;
        journal({ kind: 'transition', alertId: alert.id, status: 'firing', atMs: now, reason: known ? 'fired again after resolving' : 'fired' });
      } else {
        record = known;
        record.alert = alert; // still firing: a re-send (Alertmanager repeats) updates, never restarts
      }
    } else {
      if (known === undefined || known.alert.status === 'resolved') {
        return { alertId: alert.id, notified: [], reason: 'resolved, but was not firing here; nothing to tell' };
      }
      record = known;
      record.alert = { ...alert, endsAt: alert.endsAt ?? new Date(now).toISOString() };
      record.resolvedAtMs = now;
      cancelPages(record);
      journal({ kind: 'transition', alertId: alert.id, status: 'resolved', atMs: now, reason: 'resolved' });
    }
    const { report, entries } = decide(record, now);
    await persist();
    startRound(record, entries);
    return report;
  }

  async function receiveAlertmanager(body: unknown): Promise<{ accepted: number; steps: StepReport[] }> {
    const alerts = fromAlertmanager(body);
    const steps: StepReport[] = [];
    for (const alert of alerts) steps.push(await onTransition(alert));
    return { accepted: alerts.length, steps };
  }

  async function tick(now: number): Promise<TickReport> {
    assertOpen('tick');
    const steps: StepReport[] = [];
    const started: [AlertRecord, OutboxEntry[]][] = [];
    for (const record of Object.values(state.alerts)) {
      if (record.alert.status === 'resolved' && (record.escalation.resolutionSent || record.escalation.pages.length === 0)) continue;
      const { report, entries } = decide(record, now);
      steps.push(report);
      if (entries.length > 0) started.push([record, entries]);
    }
    const pruned = prune(now);
    if (started.length > 0 || pruned) await persist();
    for (const [record, entries] of started) startRound(record, entries);
    let retried = 0;
    for (const record of Object.values(state.alerts)) {
      const due = record.outbox.filter((e) => e.status === 'pending' && e.nextRoundAtMs <= now);
      if (due.length > 0) retried += startRound(record, due);
    }
    return { steps, retried };
  }

  /** Drops resolved episodes with nothing left to deliver, oldest first, past their time or count. */
  function prune(now: number): boolean {
    const done = Object.values(state.alerts)
      .filter((r) => r.alert.status === 'resolved' && !r.outbox.some((e) => e.status === 'pending'))
      .sort((a, b) => (a.resolvedAtMs ?? 0) - (b.resolvedAtMs ?? 0));
    let dropped = 0;
    done.forEach((record, i) => {
      const tooMany = done.length - i > resolvedKeptMax;
      if (tooMany || now - (record.resolvedAtMs ?? now) > resolvedKeptMs) {
        delete state.alerts[record.alert.id];
        dropped++;
      }
    });
    return dropped > 0;
  }

  async function ack(alertId: string, by: string, via: 'operator' | 'link' = 'operator'): Promise<AckReport> {
    assertOpen(`acknowledge "${alertId}"`);
    const record = state.alerts[alertId];
    if (record === undefined) throw new ParleyError('not_found', `Cannot acknowledge "${alertId}": no such alert`);
    if (by.trim() === '') throw new ParleyError('validation_failed', `Cannot acknowledge "${alertId}": say who acknowledges`);
    if (record.ack !== undefined) return { alertId, ack: record.ack, already: true };
    record.ack = { by, atMs: clock() };
    cancelPages(record);
    journal({ kind: 'ack', alertId, by, atMs: record.ack.atMs, via });
    await persist();
    return { alertId, ack: record.ack, already: false };
  }

  async function ackWithLink(signed: SignedAck): Promise<AckReport> {
    const verdict = verifyAck(signed, config.ackSecret, clock());
    if (!verdict.ok) {
      const why = { bad_signature: 'the signature does not match', expired: 'the link has expired', malformed: 'the link is malformed or links are off' }[verdict.reason];
      throw new ParleyError('forbidden', `Cannot acknowledge "${signed.alertId}" by link: ${why}`);
    }
    return ack(signed.alertId, signed.person, 'link');
  }

  function list(): AlertView[] {
    const now = clock();
    return Object.values(state.alerts)
      .sort((a, b) => Number(a.alert.status === 'resolved') - Number(b.alert.status === 'resolved') || b.escalation.sinceMs - a.escalation.sinceMs)
      .map((record) => {
        const next = escalateAt(record, now).nextAt;
        return {
          alert: { ...record.alert },
          ...(record.ack ? { ack: { ...record.ack } } : {}),
          since: new Date(record.escalation.sinceMs).toISOString(),
          pages: record.escalation.pages.map((page) => ({ ...page, channels: [...page.channels] })),
          deliveries: record.outbox.map((e) => ({
            channel: e.channel,
            notice: e.key,
            status: e.status,
            attempts: e.attempts,
            ...(e.lastError !== undefined ? { lastError: e.lastError } : {}),
          })),
          nextEscalationAt: next === null ? null : new Date(next).toISOString(),
        };
      });
  }

  async function heartbeat(now: number): Promise<HeartbeatReport> {
    assertOpen('send a heartbeat');
    const { url, channel, intervalMs } = config.heartbeat;
    const sender = url !== undefined ? createHeartbeatSender(url, config.delivery.timeoutMs) : channel !== undefined ? senders.get(channel) : undefined;
    if (sender === undefined) return { sent: false, reason: 'no heartbeat receiver configured' };
    const last = state.heartbeat.lastSentAtMs;
    if (last !== null && now >= last && now - last < intervalMs) return { sent: false, reason: `not due until ${new Date(last + intervalMs).toISOString()}` };
    // Marked before sending: a slow receiver must not make every tick send another heartbeat.
    state.heartbeat.lastSentAtMs = now;
    void persist();
    // One attempt, no retries: the next heartbeat is the retry, and a hung one must not pile up.
    const result = await track(
      deliverWithRetries(sender, watchdogNotice(now, intervalMs, config.externalUrl), {
        ...config.delivery,
        retries: 0,
        signal: shutdown.signal,
        journal: (attempt) => journal({ kind: 'attempt', ...attempt }),
      }),
    );
    journal({ kind: 'heartbeat', ok: result.ok, ...(result.error !== undefined && !result.ok ? { error: result.error } : {}), atMs: now });
    return { sent: true, ok: result.ok, ...(result.ok ? {} : { error: result.error }), reason: result.ok ? `sent to ${sender.name}` : `failed on ${sender.name}` };
  }

  async function idle(): Promise<void> {
    while (running.size > 0) await Promise.allSettled([...running]);
  }

  async function close(): Promise<void> {
    if (shutdown.signal.aborted) return idle();
    shutdown.abort();
    await idle();
    await persist();
  }

  return { onTransition, receiveAlertmanager, tick, ack: (id, by) => ack(id, by, 'operator'), ackWithLink, list, heartbeat, idle, close };
}

/** Identifies a delivery in progress; the episode's start keeps a re-fired alert's pages apart. */
function flightKey(record: AlertRecord, entry: OutboxEntry): string {
  return `${record.alert.id}\u0000${record.escalation.sinceMs}\u0000${entry.id}`;
}

/** The notice a heartbeat channel receives: Alertmanager's `Watchdog` convention, always firing. */
function watchdogNotice(now: number, intervalMs: number, externalUrl: string): Notice {
  return {
    kind: 'heartbeat',
    alert: {
      id: 'parley-alerting-watchdog',
      name: 'Watchdog',
      severity: 'info',
      node: 'alerting',
      summary: `Parley's alerting path is alive; this arrives every ${Math.round(intervalMs / 1000)} s, and its silence means alerts may not reach anyone`,
      startsAt: new Date(now).toISOString(),
      status: 'firing',
    },
    level: 0,
    person: null,
    externalUrl,
  };
}

/** A stable id for a set of labels (Alertmanager's fingerprint plays the same role). */
export function alertFingerprint(labels: Readonly<Record<string, string>>): string {
  const sorted = Object.keys(labels)
    .sort()
    .map((key) => [key, labels[key]]);
  return createHash('sha256').update(JSON.stringify(sorted)).digest('hex').slice(0, 16);
}

const alertmanagerBodySchema = z.object({
  version: z.literal('4'),
  status: z.enum(['firing', 'resolved']).optional(),
  alerts: z
    .array(
      z.object({
        status: z.enum(['firing', 'resolved']),
        labels: z.record(z.string(), z.string()),
        annotations: z.record(z.string(), z.string()).default({}),
        startsAt: z.iso.datetime({ offset: true }),
        endsAt: z.string().optional(),
        generatorURL: z.string().optional(),
        fingerprint: z.string().optional(),
      }),
    )
    .max(alertmanagerAlertsMax),
});

/** Severities other rule sets use, mapped to ours; anything unknown is a warning (paged, not escalated). */
const severityAliases: Record<string, Severity> = {
  critical: 'critical',
  page: 'critical',
  warning: 'warning',
  warn: 'warning',
  info: 'info',
  none: 'info',
};

/** The alerts in an Alertmanager webhook v4 body; throws `validation_failed` naming what is wrong. */
export function fromAlertmanager(body: unknown): Alert[] {
  const parsed = alertmanagerBodySchema.safeParse(body);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
    throw new ParleyError('validation_failed', `Cannot take the Alertmanager webhook body: ${problems[0]}`, { details: problems });
  }
  return parsed.data.alerts.map((incoming) => {
    const { labels, annotations } = incoming;
    const name = labels.alertname ?? 'unnamed';
    const endsAt = incoming.status === 'resolved' && incoming.endsAt && !incoming.endsAt.startsWith('0001-') ? incoming.endsAt : undefined;
    return {
      id: incoming.fingerprint || alertFingerprint(labels),
      name,
      severity: severityAliases[(labels.severity ?? '').toLowerCase()] ?? 'warning',
      node: labels.node ?? labels.instance ?? '',
      summary: annotations.summary ?? annotations.description ?? annotations.message ?? name,
      startsAt: incoming.startsAt,
      ...(endsAt !== undefined ? { endsAt } : {}),
      status: incoming.status,
      labels,
    };
  });
}
