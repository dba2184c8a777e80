// The shapes that flow through alerting/: an alert as the monitor's evaluator (or an Alertmanager
// in front of us) hands it over, the notice a channel renders, and the journal entries every step
// leaves behind. Types and constants only, so the pure escalation core and the I/O shell share them.

// The constants are config/'s, since the configuration's schema names them (severities of a
// policy, escalation targets, handoff weekdays); they are re-exported so alerting/ reads them here.
import type { Severity } from '../config/config.ts';

export { NEXT_ON_CALL, ON_CALL, severities, weekdays, type Severity } from '../config/config.ts';

/** Whether the condition behind an alert still holds. */
export type AlertStatus = 'firing' | 'resolved';

/** An alert as it reaches alerting: one transition (firing or resolved) of one condition. */
export interface Alert {
  /** Stable fingerprint of the condition: the same condition firing again has the same id. */
  id: string;
  /** The rule's name, sent as `labels.alertname`. */
  name: string;
  severity: Severity;
  /** The node (or component) the alert is about, sent as `labels.node`. */
  node: string;
  /** One line a person understands, sent as `annotations.summary`. */
  summary: string;
  /** ISO 8601 time the condition started. */
  startsAt: string;
  /** ISO 8601 time the condition ended; set once resolved. */
  endsAt?: string;
  status: AlertStatus;
  /** Further labels (e.g. `job`), passed through to webhook receivers. */
  labels?: Record<string, string>;
}

/** Who acknowledged an alert, and when (ms since the epoch). */
export interface Ack {
  by: string;
  atMs: number;
}

/** What a notification is about: a page asks for action, a resolution says none is needed any more. */
export type NoticeKind = 'page' | 'resolved' | 'heartbeat';

/** Everything a channel needs to render one notification, already decided by escalation. */
export interface Notice {
  kind: NoticeKind;
  /** Which escalation notification this is (`page:0:1:bob`), for the journal. */
  key?: string;
  alert: Alert;
  /** Escalation level (0 = first) that decided this notice. */
  level: number;
  /** The person paged, or null when the policy named a channel rather than a person. */
  person: string | null;
  /** A signed link that acknowledges the alert as `person`; absent without an ack secret. */
  ackUrl?: string;
  /** Where operators look at Parley (`externalURL` of the webhook payload). */
  externalUrl: string;
}

/** One delivery attempt on one channel, as deliver.ts reports it to the journal. */
export interface DeliveryAttempt {
  channel: string;
  alertId: string;
  /** The notification's key, when the notice has one. */
  notice?: string;
  /** 1 for the first attempt of a round, 2 for its first retry, ... */
  attempt: number;
  ok: boolean;
  error?: string;
  /** How long the attempt took. */
  ms: number;
}

/** Every journal entry alerting writes: what happened, to which alert, and why. */
export type AlertingEvent =
  | ({ kind: 'attempt' } & DeliveryAttempt)
  | { kind: 'transition'; alertId: string; status: AlertStatus; atMs: number; reason: string }
  | { kind: 'notify'; alertId: string; notice: NoticeKind; level: number; round: number; person: string | null; channels: string[]; atMs: number; reason: string }
  | { kind: 'ack'; alertId: string; by: string; atMs: number; via: 'operator' | 'link' }
  | { kind: 'gave-up'; alertId: string; channel: string; notice: string; attempts: number; atMs: number; error: string }
  | { kind: 'heartbeat'; ok: boolean; error?: string; atMs: number }
  | { kind: 'state'; atMs: number; problem: string };

/** Where alerting's journal entries go (the incidents journal, a log); it must not throw. */
export type AlertingJournal = (event: AlertingEvent) => void;
