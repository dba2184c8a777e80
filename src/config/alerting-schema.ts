// The `alerting` section of the configuration: channels, delivery limits, the on-call rota,
// escalation policies, the heartbeat and signed acknowledgement links. Every key has a default,
// so an empty section is valid; unknown keys are errors. schema.ts embeds it as `alerting`.
//
// Only the shape lives here (config/ imports nothing of ours). What the shape cannot see — names
// that point nowhere, and a critical alert that would reach fewer than two independent channels
// (invariant 10) — is checked by `checkAlertingConfig` in alerting/, which `parley config check`
// and `parley up` run after this schema.
import { z } from 'zod';

/** Every severity, loudest first. */
export const severities = ['critical', 'warning', 'info'] as const;

/** The escalation target meaning "whoever the rota puts on call now". */
export const ON_CALL = 'on-call';
/** The escalation target meaning "whoever takes the shift after the current one" (the backup). */
export const NEXT_ON_CALL = 'next-on-call';

/** Days of the week in `Date.getUTCDay()` order, as the rota's handoff names them. */
export const weekdays = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'] as const;

const port = z.number().int().min(1).max(65535);
const name = z.string().min(1).max(64);
const timeoutMs = z.number().int().min(10).max(120_000);

const smtpSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: port.default(25),
  /** TLS from the first byte (port 465); otherwise STARTTLS is used when the server offers it. */
  secure: z.boolean().default(false),
  /** Login for SMTP AUTH; without it no AUTH is attempted. */
  user: z.string().min(1).optional(),
  password: z.string().optional(),
});

const emailChannelSchema = z.strictObject({
  name,
  type: z.literal('email'),
  smtp: smtpSchema.prefault({}),
  from: z.string().min(3).default('parley@localhost'),
  to: z.array(z.string().min(3)).min(1).max(100),
  /** Overrides delivery.timeoutMs for this channel. */
  timeoutMs: timeoutMs.optional(),
});

const webhookChannelSchema = z.strictObject({
  name,
  type: z.literal('webhook'),
  url: z.url({ protocol: /^https?$/ }),
  timeoutMs: timeoutMs.optional(),
});

const commandChannelSchema = z.strictObject({
  name,
  type: z.literal('command'),
  /** argv: the program and its arguments; no shell is involved. */
  command: z.array(z.string().min(1)).min(1).max(64),
  timeoutMs: timeoutMs.optional(),
});

/** One channel: how a notification leaves Parley. */
export const channelSchema = z.discriminatedUnion('type', [emailChannelSchema, webhookChannelSchema, commandChannelSchema]);

const deliverySchema = z.strictObject({
  /** One attempt on one channel ends after this long. */
  timeoutMs: timeoutMs.default(5000),
  /** Retries after a failed attempt, within one round; a failed round is retried by tick(). */
  retries: z.number().int().min(0).max(1000).default(5),
  /** The first retry waits up to this long (full jitter); each further retry doubles it. */
  backoffMs: z.number().int().min(1).max(600_000).default(500),
  /** No wait between retries is longer than this, and a failed round is retried after it. */
  maxBackoffMs: z.number().int().min(1).max(3_600_000).default(30_000),
  /** A notification not delivered on a channel after this long is given up (and journaled). */
  giveUpAfterMs: z.number().int().min(1000).max(7 * 24 * 3_600_000).default(24 * 3_600_000),
});

const isoTime = z.iso.datetime({ offset: true });

const personSchema = z.strictObject({
  name,
  /** The channels that reach this person; a critical page goes to all of them at once. */
  channels: z.array(name).min(1).max(20),
});

const rotaSchema = z.strictObject({
  /** People in shift order: the first takes the first shift after `since`, then the next, round robin. */
  people: z.array(personSchema).max(100).default([]),
  handoff: z
    .strictObject({
      /** Shift length. */
      every: z.enum(['day', 'week']).default('week'),
      /** Day of a weekly handoff. */
      weekday: z.enum(weekdays).default('monday'),
      /** Time of the handoff, UTC. */
      at: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must look like 09:00 (UTC)').default('09:00'),
    })
    .prefault({}),
  /** The first handoff at or after this moment starts the first person's shift. */
  since: isoTime.default('2024-01-01T00:00:00Z'),
  /** Someone else on call for a while; the last override covering a moment wins. */
  overrides: z
    .array(z.strictObject({ from: isoTime, to: isoTime, person: name }))
    .max(1000)
    .default([]),
});

const levelSchema = z.strictObject({
  /** Minutes after the previous level (after the alert started, for the first level). */
  afterMinutes: z.number().min(0).max(7 * 24 * 60).default(0),
  /** `on-call`, `next-on-call`, a person's name or a channel's name. */
  notify: z.array(name).min(1).max(20),
});

const policySchema = z.strictObject({
  name,
  /** Alerts of these severities follow this policy (the first policy that lists a severity wins). */
  severities: z.array(z.enum(severities)).min(1).default(['critical']),
  levels: z.array(levelSchema).min(1).max(20),
  /** After the last level, start again from the first, this many times, until acknowledged. */
  repeat: z
    .strictObject({
      times: z.number().int().min(0).max(100).default(0),
      /** Minutes from the last level to the first level of the next round. */
      afterMinutes: z.number().positive().max(7 * 24 * 60).default(10),
    })
    .prefault({}),
});

/** The policies used when the configuration names none: critical escalates, warnings page once. */
const defaultPolicies: z.input<typeof policySchema>[] = [
  {
    name: 'critical',
    severities: ['critical'],
    levels: [
      { afterMinutes: 0, notify: [ON_CALL] },
      { afterMinutes: 5, notify: [NEXT_ON_CALL] },
    ],
    repeat: { times: 3, afterMinutes: 10 },
  },
  { name: 'warning', severities: ['warning'], levels: [{ afterMinutes: 0, notify: [ON_CALL] }] },
];

/** The whole `alerting` section. `z.input` is what a file may say; `AlertingConfig` is what code sees. */
export const alertingConfigSchema = z
  .strictObject({
    /** No channel means alerting is off (lint warns); one or more must reach two independent ones. */
    channels: z.array(channelSchema).max(100).default([]),
    delivery: deliverySchema.prefault({}),
    rota: rotaSchema.prefault({}),
    policies: z.array(policySchema).max(50).prefault(defaultPolicies),
    heartbeat: z
      .strictObject({
        /** A dead-man's switch (e.g. healthchecks.io) that alarms when our POSTs stop. */
        url: z.url({ protocol: /^https?$/ }).optional(),
        /** Or a channel that receives a `Watchdog` notice each interval. */
        channel: name.optional(),
        intervalMs: z.number().int().min(1000).max(3_600_000).default(60_000),
      })
      .prefault({}),
    /** Secret for signed acknowledgement links; empty means no links are sent. */
    ackSecret: z
      .string()
      .default('')
      .refine((secret) => secret === '' || secret.length >= 16, 'must be empty (no links) or at least 16 characters'),
    /** How long a signed acknowledgement link works. */
    ackLinkTtlMs: z.number().int().min(60_000).max(30 * 24 * 3_600_000).default(24 * 3_600_000),
    /** Where people reach Parley: the base of acknowledgement links and the payload's externalURL. */
    externalUrl: z.url({ protocol: /^https?$/ }).default('http://127.0.0.1:8080'),
  })
  .prefault({});

/** How loud an alert is; only `critical` must reach two independent channels (invariant 10). */
export type Severity = (typeof severities)[number];
/** The alerting section as code sees it, every default filled in. */
export type AlertingConfig = z.output<typeof alertingConfigSchema>;
/** What a configuration file may say in its alerting section. */
export type AlertingConfigInput = z.input<typeof alertingConfigSchema>;
/** One configured channel. */
export type ChannelConfig = AlertingConfig['channels'][number];
/** Delivery limits. */
export type DeliveryConfig = AlertingConfig['delivery'];
/** The on-call rota. */
export type RotaConfig = AlertingConfig['rota'];
/** One escalation policy. */
export type PolicyConfig = AlertingConfig['policies'][number];
