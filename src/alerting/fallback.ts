// The fallback path of issue 8 point 6: when the ops process (the alerting path) goes silent, its
// supervisor — a second process — raises a critical alert itself, straight through every
// configured channel at once, with the usual timeouts and retries but without escalation state
// (the state belongs to the silent process). Used by `parley up`'s watch of the ops process.
import type { AlertingConfig } from './config-schema.ts';
import { createSender } from './channels.ts';
import { deliverAll, type DeliveryResult } from './deliver.ts';
import type { Alert, DeliveryAttempt } from './types.ts';

/** Sends one alert on every configured channel at once; resolves when each has delivered or given up. */
export async function sendFallback(
  config: AlertingConfig,
  alert: Alert,
  options: { journal?: (attempt: DeliveryAttempt) => void; signal?: AbortSignal } = {},
): Promise<DeliveryResult[]> {
  const jobs = config.channels.map((channel) => ({
    sender: createSender(channel, config.delivery),
    notice: { kind: 'page' as const, alert, level: 0, person: null, externalUrl: config.externalUrl },
  }));
  return deliverAll(jobs, { ...config.delivery, ...options });
}
