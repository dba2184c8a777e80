// When to restart a crashed child. Pure: the supervisor passes how long the child had been up and
// how many times in a row it has crashed, and gets back the delay, or the decision to give up.

/** Limits of the restart policy. */
export interface RestartPolicy {
  /** Delay before the first restart. */
  initialDelayMs: number;
  /** The delay doubles per consecutive crash up to this bound. */
  maxDelayMs: number;
  /** A child that stayed up this long before crashing starts again from the initial delay. */
  stableAfterMs: number;
  /** The consecutive crash at which the supervisor stops everything instead of looping. */
  crashesMax: number;
}

/** The policy `parley up` uses for app servers and PostgreSQL. */
export const defaultRestartPolicy: RestartPolicy = {
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  stableAfterMs: 60_000,
  crashesMax: 10,
};

/** What to do about one crash. */
export type RestartDecision =
  | { action: 'restart'; delayMs: number; crashes: number }
  | { action: 'give-up'; crashes: number };

/** Decides the next restart from the earlier consecutive crashes and the uptime before this one. */
export function decideRestart(previousCrashes: number, uptimeMs: number, policy: RestartPolicy = defaultRestartPolicy): RestartDecision {
  const crashes = uptimeMs >= policy.stableAfterMs ? 1 : previousCrashes + 1;
  if (crashes >= policy.crashesMax) return { action: 'give-up', crashes };
  const delayMs = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** (crashes - 1));
  return { action: 'restart', delayMs, crashes };
}
