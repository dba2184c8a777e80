// Settings that are valid but dangerous: each could cause, or hide, a link of the chain in
// ../shared/postmortem-2024-07-30.txt (a failover that never ends, lag nobody sees, app servers that
// hang, on-call that hears late). Pure: a function of the parsed configuration.
//
// Errors (combinations that cannot work, e.g. a lease shorter than three agent loops) are schema
// refinements in schema.ts: `parley config check` prints them and exits 1, `parley up` refuses to
// start. Warnings are findings here: printed by both, with the reason, and not fatal.
import type { Config } from './schema.ts';

/** One warning, naming the key and saying what could go wrong. */
export interface Finding {
  key: string;
  message: string;
}

const mib = 1024 * 1024;

/** The warnings for a valid configuration, most dangerous first; empty when nothing is risky. */
export function lintConfig(config: Config): Finding[] {
  const findings: Finding[] = [];
  const warn = (key: string, message: string): void => void findings.push({ key, message });
  const { cluster, data, maintenance, alerting } = config;

  if (cluster.nodes === 1) {
    warn('cluster.nodes', 'one node: no standby holds a copy of acknowledged messages, and nothing can take over when it fails');
  } else if (cluster.nodes === 2) {
    warn('cluster.nodes', 'two nodes: ANY 1 of a single standby, so writes stop whenever that standby is down (3 nodes tolerate one)');
  }
  if (alerting.channels.length === 0) {
    // Not an error (`npm start` needs no file), so it has to be loud: this is the postmortem's silence.
    warn('alerting.channels', 'no alerting channel: ALERTING IS OFF, nobody is told when replication stops or a failover stalls; configure two independent channels (docs/alerting.md)');
  } else if (alerting.channels.length === 1) {
    warn('alerting.channels', `one alerting channel (${alerting.channels[0]!.name}): if it fails silently, on-call hears nothing; configure two independent ones`);
  }
  if (data.queryTimeoutMs > 10_000) {
    warn('data.queryTimeoutMs', `${data.queryTimeoutMs} ms: a sick database holds every request that long before answering 503; users and app servers pile up (keep it at or under 10 s)`);
  }
  if (cluster.leaseTtlMs > 30_000) {
    warn('cluster.leaseTtlMs', `${cluster.leaseTtlMs} ms: a dead primary is replaced only after its lease ends; sends fail for at least that long`);
  }
  if (cluster.failoverDeadlineMs > 120_000) {
    warn('cluster.failoverDeadlineMs', `${cluster.failoverDeadlineMs} ms: a promotion that hangs holds the cluster without a primary that long before it is rolled back`);
  }
  if (cluster.primaryStartTimeoutMs > 300_000) {
    warn('cluster.primaryStartTimeoutMs', `${cluster.primaryStartTimeoutMs} ms: a primary that cannot start keeps its lease, and the cluster without a primary, that long`);
  }
  if (cluster.maximumLagOnFailoverBytes > 256 * mib) {
    warn('cluster.maximumLagOnFailoverBytes', `${Math.round(cluster.maximumLagOnFailoverBytes / mib)} MiB: a standby that far behind may be promoted and then take minutes to replay before it answers`);
  }
  if (maintenance.maxTtlMs > 24 * 3_600_000) {
    warn('maintenance.maxTtlMs', `${maintenance.maxTtlMs / 3_600_000} h: a forgotten maintenance would switch automatic failover off for over a day`);
  }
  if (config.log.level === 'silent' || config.log.level === 'fatal') {
    warn('log.level', `"${config.log.level}": errors would not be logged, and an incident would have no trail`);
  }
  return findings;
}
