// Checks of the `alerting` section that its schema alone cannot make: names that point nowhere, and
// above all a critical alert that would reach fewer than two independent channels (invariant 10,
// issue 8 point 2): the July 30 postmortem's on-call heard late because the one way to reach them
// failed. The schema itself is config/'s (src/config/alerting-schema.ts, embedded as `alerting`);
// its types are re-exported here so alerting/ keeps one place to take them from.
//
// With no channel at all, alerting is off: that is not an error here (`npm start` needs no file),
// and config/'s lint warns about it. With one channel or more, every page of a critical alert
// must reach two independent ones.
import { NEXT_ON_CALL, ON_CALL, type AlertingConfig, type ChannelConfig } from '../config/config.ts';
import { recipientsFor } from './escalation.ts';

export {
  alertingConfigSchema,
  NEXT_ON_CALL,
  ON_CALL,
  type AlertingConfig,
  type AlertingConfigInput,
  type ChannelConfig,
  type DeliveryConfig,
  type PolicyConfig,
  type RotaConfig,
} from '../config/config.ts';

const reservedNames = new Set([ON_CALL, NEXT_ON_CALL]);

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
  // No channel: alerting is off, by choice or by default (lint warns); nothing to count.
  if (config.channels.length === 0) return;
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
