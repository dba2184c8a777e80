// The `alerting` section of the configuration: channels, delivery limits, the on-call rota,
// escalation policies, the heartbeat and signed acknowledgement links. Every key has a default,
// so an empty section is valid; unknown keys are errors. config/schema.ts embeds this schema.
//
// `checkAlertingConfig` finds what the schema alone cannot: names that point nowhere, and above all
// a critical alert that would reach fewer than two independent channels (invariant 10, issue 8
// point 2): the July 30 postmortem's on-call heard late because the one way to reach them failed.
import { z } from 'zod';
import { recipientsFor } from './escalation.ts';
import { NEXT_ON_CALL, ON_CALL, severities, weekdays } from './types.ts';

export { NEXT_ON_CALL, ON_CALL } from './types.ts';

const reservedNames = new Set([ON_CALL, NEXT_ON_CALL]);

const port = z.number().int().min(1).max(65535);
const name = z.string().min(1).max(64);
const timeoutMs = z.number().int().min(10).max(120_000);
const minuteMs = 60_000;

const smtpSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: port.default(25),
  /** TLS from the first byte (port 465); otherwise STARTTLS is used when the server offers it. */
  secure: z.boolean().default(false),
  user: z.string().min(1).optional(),
  pass: z.string().optional(),
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

/**
 * What a channel depends on to work: two channels with the same key fail together (one SMTP
 * relay, one HTTP server, one program), so for invariant 10 they count as one.
 */
export function channelDependency(channel: ChannelConfig): string {
  switch (channel.type) {
    case 'email':
      return `smtp://${channel.smtp.host.toLowerCase()}:${channel.smtp.port}`;
    case 'webhook': {
      const url = new URL(channel.url);
      return `http://${url.host.toLowerCase()}`;
    }
    case 'command':
      return `command:${JSON.stringify(channel.command)}`;
  }
}

/** How many channels of a list can fail independently of each other. */
export function independentCount(names: readonly string[], channels: readonly ChannelConfig[]): number {
  const byName = new Map(channels.map((c) => [c.name, c]));
  const keys = new Set<string>();
  for (const n of names) {
    const channel = byName.get(n);
    if (channel) keys.add(channelDependency(channel));
  }
  return keys.size;
}

/**
 * Problems the schema cannot see, one line each, naming the key (`alerting.policies.0.levels.1.notify: ...`).
 * Empty when the section is safe: `parley config check` refuses a configuration with any.
 */
export function checkAlertingConfig(config: AlertingConfig): string[] {
  const problems: string[] = [];
  const channelNames = new Set(config.channels.map((c) => c.name));
  const personNames = new Set(config.rota.people.map((p) => p.name));

  checkNames(problems, 'alerting.channels', config.channels.map((c) => c.name));
  checkNames(problems, 'alerting.rota.people', config.rota.people.map((p) => p.name));
  checkNames(problems, 'alerting.policies', config.policies.map((p) => p.name));
  config.rota.people.forEach((person, i) => {
    if (channelNames.has(person.name)) {
      problems.push(`alerting.rota.people.${i}.name: "${person.name}" is also a channel's name; an escalation target would be ambiguous`);
    }
    person.channels.forEach((channel, j) => {
      if (!channelNames.has(channel)) problems.push(`alerting.rota.people.${i}.channels.${j}: unknown channel "${channel}"`);
    });
  });
  config.rota.overrides.forEach((override, i) => {
    if (!personNames.has(override.person)) problems.push(`alerting.rota.overrides.${i}.person: unknown person "${override.person}"`);
    if (Date.parse(override.from) >= Date.parse(override.to)) {
      problems.push(`alerting.rota.overrides.${i}.to: must be after from (${override.from})`);
    }
  });
  config.policies.forEach((policy, i) => {
    policy.levels.forEach((level, j) => {
      level.notify.forEach((target, k) => {
        if (!reservedNames.has(target) && !channelNames.has(target) && !personNames.has(target)) {
          problems.push(`alerting.policies.${i}.levels.${j}.notify.${k}: "${target}" is neither ${ON_CALL}, ${NEXT_ON_CALL}, a person of alerting.rota.people nor a channel`);
        }
      });
    });
  });
  checkCriticalReach(problems, config);

  const { heartbeat, delivery } = config;
  if (heartbeat.url !== undefined && heartbeat.channel !== undefined) {
    problems.push('alerting.heartbeat: set url or channel, not both');
  }
  if (heartbeat.channel !== undefined && !channelNames.has(heartbeat.channel)) {
    problems.push(`alerting.heartbeat.channel: unknown channel "${heartbeat.channel}"`);
  }
  if (delivery.backoffMs > delivery.maxBackoffMs) {
    problems.push(`alerting.delivery.backoffMs: must not exceed alerting.delivery.maxBackoffMs (${delivery.maxBackoffMs})`);
  }
  return problems;
}

/** Names must be unique and must not be one of the reserved escalation targets. */
function checkNames(problems: string[], key: string, names: readonly string[]): void {
  const seen = new Set<string>();
  names.forEach((n, i) => {
    if (seen.has(n)) problems.push(`${key}.${i}.name: duplicate name "${n}"`);
    if (reservedNames.has(n)) problems.push(`${key}.${i}.name: "${n}" is reserved for escalation targets`);
    seen.add(n);
  });
}

/**
 * Every page of a critical alert, whoever is on call, must reach two or more independent
 * channels. Each level of the policy that handles critical alerts is tried with every person of
 * the rota on call (an override can put anyone there) and every person as next on call.
 */
function checkCriticalReach(problems: string[], config: AlertingConfig): void {
  if (config.channels.length === 0) {
    problems.push('alerting.channels: no channel configured: a critical alert would reach nobody; configure two or more independent channels');
    return;
  }
  const index = config.policies.findIndex((p) => p.severities.includes('critical'));
  const policy = config.policies[index];
  if (policy === undefined) {
    problems.push('alerting.policies: no policy lists severity critical: a critical alert would page nobody');
    return;
  }
  const people = config.rota.people.map((p) => p.name);
  const candidates: (string | null)[] = people.length > 0 ? people : [null];
  const channels = config.channels.map((c) => c.name);
  policy.levels.forEach((level, j) => {
    const usesNext = level.notify.includes(NEXT_ON_CALL);
    const usesOnCall = level.notify.includes(ON_CALL);
    for (const onCall of usesOnCall ? candidates : [null]) {
      for (const nextOnCall of usesNext ? candidates : [null]) {
        const recipients = recipientsFor(level.notify, { rota: config.rota, channels, onCall, nextOnCall });
        const reached = [...new Set(recipients.flatMap((r) => r.channels))];
        const count = independentCount(reached, config.channels);
        if (count >= 2) continue;
        const who = [onCall !== null && usesOnCall ? `${onCall} on call` : '', nextOnCall !== null && usesNext ? `${nextOnCall} next` : '']
          .filter((s) => s !== '')
          .join(', ');
        problems.push(
          `alerting.policies.${index}.levels.${j}.notify: a critical alert paged at this level${who ? ` (${who})` : ''} reaches ${count} independent channel${count === 1 ? '' : 's'} (${reached.join(', ') || 'none'}); it must reach two or more (channels through the same server or program count once)`,
        );
        return;
      }
    }
  });
}
