// The three ways a notice leaves Parley, each a `Sender` for deliver.ts:
//   - email: one message through the configured SMTP server (nodemailer), a fresh connection per
//     attempt so a half-dead connection is never reused for a page;
//   - webhook: a POST of the Alertmanager webhook payload, version 4 (API.md "Webhook payload"),
//     so any receiver written for Alertmanager works unchanged;
//   - command: a program (argv, no shell) that reads the notice as JSON on stdin, for SMS
//     gateways and the like; a non-zero exit is a failed attempt.
// A sender throws on failure and honours its abort signal; timeouts and retries are deliver.ts's.
import { spawn } from 'node:child_process';
import nodemailer from 'nodemailer';
import type { ChannelConfig } from './config-schema.ts';
import type { Sender } from './deliver.ts';
import type { Alert, Notice } from './types.ts';

/** Alertmanager's "not ended" time, sent as endsAt of a firing alert. */
const zeroTime = '0001-01-01T00:00:00Z';
/** Characters of a program's stderr kept for the error message. */
const stderrMaxChars = 2000;

/** One alert of the Alertmanager webhook payload. */
export interface AlertmanagerAlert {
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  generatorURL: string;
  fingerprint: string;
}

/** The Alertmanager webhook payload, version 4. */
export interface AlertmanagerWebhook {
  version: '4';
  groupKey: string;
  truncatedAlerts: number;
  status: 'firing' | 'resolved';
  receiver: string;
  groupLabels: Record<string, string>;
  commonLabels: Record<string, string>;
  commonAnnotations: Record<string, string>;
  externalURL: string;
  alerts: AlertmanagerAlert[];
}

/** The sender for one configured channel; `timeoutMs` is the delivery default for attempts. */
export function createSender(channel: ChannelConfig, defaults: { timeoutMs: number }): Sender {
  const timeoutMs = channel.timeoutMs ?? defaults.timeoutMs;
  switch (channel.type) {
    case 'email':
      return { name: channel.name, timeoutMs, send: (notice, signal) => sendEmail(channel, timeoutMs, notice, signal) };
    case 'webhook':
      return { name: channel.name, timeoutMs, send: (notice, signal) => postJson(channel.url, alertmanagerPayload(notice, channel.name), signal) };
    case 'command':
      return { name: channel.name, timeoutMs, send: (notice, signal) => runCommand(channel.name, channel.command, commandInput(notice), signal) };
  }
}

/** A sender for a dead-man's-switch URL: a small JSON POST that says the alerting path works. */
export function createHeartbeatSender(url: string, timeoutMs: number): Sender {
  return {
    name: 'heartbeat',
    timeoutMs,
    send: (notice, signal) => postJson(url, { status: 'ok', source: 'parley-alerting', sentAt: notice.alert.startsAt, summary: notice.alert.summary }, signal),
  };
}

/** The labels every receiver sees: the alert's own, then alertname, severity and node, always set. */
export function alertLabels(alert: Alert): Record<string, string> {
  return { ...(alert.labels ?? {}), alertname: alert.name, severity: alert.severity, node: alert.node || 'cluster' };
}

/** Collapses a text to one line (the summary must be one line a person understands). */
export function oneLine(text: string, maxChars = 300): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > maxChars ? `${line.slice(0, maxChars - 1)}…` : line;
}

/** Where operators see the alert: Parley's ops view of it. */
export function alertUrl(notice: Pick<Notice, 'alert' | 'externalUrl'>): string {
  return new URL(`v1/ops/alerts/${encodeURIComponent(notice.alert.id)}`, notice.externalUrl.endsWith('/') ? notice.externalUrl : `${notice.externalUrl}/`).toString();
}

function statusOf(notice: Notice): 'firing' | 'resolved' {
  return notice.kind === 'resolved' || notice.alert.status === 'resolved' ? 'resolved' : 'firing';
}

/** Alertmanager's group key for a group of one alert (`group_by: ['...']`): its labels, sorted. */
function groupKeyOf(labels: Record<string, string>): string {
  const pairs = Object.keys(labels)
    .sort()
    .map((key) => `${key}=${JSON.stringify(labels[key])}`);
  return `{}:{${pairs.join(', ')}}`;
}

/** The webhook body for one notice: a group of one alert, in Alertmanager's webhook format v4. */
export function alertmanagerPayload(notice: Notice, receiver: string): AlertmanagerWebhook {
  const { alert } = notice;
  const status = statusOf(notice);
  const labels = alertLabels(alert);
  const annotations: Record<string, string> = { summary: oneLine(alert.summary) };
  if (notice.person !== null) annotations.person = notice.person;
  if (notice.kind !== 'heartbeat') annotations.escalationLevel = String(notice.level + 1);
  if (notice.ackUrl !== undefined && status === 'firing') annotations.ackUrl = notice.ackUrl;
  return {
    version: '4',
    groupKey: groupKeyOf(labels),
    truncatedAlerts: 0,
    status,
    receiver,
    groupLabels: labels,
    commonLabels: labels,
    commonAnnotations: annotations,
    externalURL: notice.externalUrl,
    alerts: [
      {
        status,
        labels,
        annotations,
        startsAt: alert.startsAt,
        endsAt: status === 'resolved' ? (alert.endsAt ?? zeroTime) : zeroTime,
        generatorURL: alertUrl(notice),
        fingerprint: alert.id,
      },
    ],
  };
}

/** Subject and plain-text body of the email for one notice. */
export function emailMessage(notice: Notice): { subject: string; text: string } {
  const { alert } = notice;
  if (notice.kind === 'heartbeat') {
    return { subject: '[HEARTBEAT] Parley alerting is alive', text: `${oneLine(alert.summary)}\n\nSent at ${alert.startsAt}.\n` };
  }
  const status = statusOf(notice);
  const subject = oneLine(`[${alert.severity.toUpperCase()}] ${status === 'firing' ? 'FIRING' : 'RESOLVED'}: ${alert.name} on ${alert.node || 'cluster'} - ${alert.summary}`, 200);
  const labels = Object.entries(alertLabels(alert))
    .map(([key, value]) => `${key}=${value}`)
    .join(', ');
  const lines = [
    oneLine(alert.summary),
    '',
    `Alert:     ${alert.name} (${alert.id})`,
    `Severity:  ${alert.severity}`,
    `Node:      ${alert.node || 'cluster'}`,
    `Started:   ${alert.startsAt}`,
    ...(status === 'resolved' && alert.endsAt ? [`Ended:     ${alert.endsAt}`] : []),
    ...(notice.person !== null ? [`Paged:     ${notice.person} (escalation level ${notice.level + 1})`] : []),
    `Labels:    ${labels}`,
    '',
    ...(notice.ackUrl !== undefined && status === 'firing' ? ['Acknowledge (stops the escalation):', notice.ackUrl, ''] : []),
    `Details: ${alertUrl(notice)}`,
    '',
  ];
  return { subject, text: lines.join('\n') };
}

/** What a command channel's program reads on stdin: the notice, plus one line ready for an SMS. */
export function commandInput(notice: Notice): Record<string, unknown> {
  const { alert } = notice;
  const status = statusOf(notice);
  return {
    version: 1,
    kind: notice.kind,
    status,
    text: oneLine(`${status === 'firing' ? '' : 'RESOLVED '}${alert.severity.toUpperCase()} ${alert.name} on ${alert.node || 'cluster'}: ${alert.summary}`, 160),
    person: notice.person,
    level: notice.level + 1,
    ackUrl: status === 'firing' ? notice.ackUrl : undefined,
    alert: { ...alert, labels: alertLabels(alert) },
  };
}

async function sendEmail(channel: Extract<ChannelConfig, { type: 'email' }>, timeoutMs: number, notice: Notice, signal: AbortSignal): Promise<void> {
  const { smtp } = channel;
  const transport = nodemailer.createTransport({
    host: smtp.host,
    port: smtp.port,
    secure: smtp.secure,
    ...(smtp.user !== undefined ? { auth: { user: smtp.user, pass: smtp.password ?? '' } } : {}),
    // nodemailer takes no AbortSignal: its own timeouts bound the socket, and abort closes it.
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  const close = (): void => transport.close();
  signal.addEventListener('abort', close, { once: true });
  try {
    const { subject, text } = emailMessage(notice);
    await transport.sendMail({
      from: channel.from,
      to: channel.to,
      subject,
      text,
      headers: { 'X-Parley-Alert': notice.alert.id, 'X-Parley-Notice': notice.kind },
    });
  } finally {
    signal.removeEventListener('abort', close);
    transport.close();
  }
}

async function postJson(url: string, body: unknown, signal: AbortSignal): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'Parley-Alerting/1' },
    body: JSON.stringify(body),
    redirect: 'error',
    signal,
  });
  // The answer's body is of no use; cancelling it frees the connection without reading a big one.
  await response.body?.cancel().catch(() => undefined);
  if (!response.ok) throw new Error(`POST ${new URL(url).origin} answered ${response.status}`);
}

function runCommand(name: string, argv: readonly string[], input: unknown, signal: AbortSignal): Promise<void> {
  const [program, ...args] = argv as [string, ...string[]];
  return new Promise<void>((resolve, reject) => {
    // The abort signal kills the program (SIGKILL: a hung SMS script must not outlive its attempt).
    const child = spawn(program, args, { stdio: ['pipe', 'ignore', 'pipe'], signal, killSignal: 'SIGKILL' });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < stderrMaxChars) stderr += chunk;
    });
    child.on('error', (error) => reject(new Error(`command "${name}" (${program}) failed to run: ${error.message}`)));
    // A program that exits without reading stdin makes our write fail with EPIPE; its exit code decides.
    child.stdin.on('error', () => undefined);
    child.on('close', (code, killedBy) => {
      if (code === 0) resolve();
      else {
        const how = code !== null ? `exited with ${code}` : `was killed by ${killedBy ?? 'a signal'}`;
        reject(new Error(`command "${name}" ${how}${stderr.trim() ? `: ${oneLine(stderr, 200)}` : ''}`));
      }
    });
    child.stdin.end(`${JSON.stringify(input)}\n`);
  });
}
