// Proves the state file: what was saved comes back after a "restart" (a fresh store on the same
// directory), escalation at the same moment then pages nobody twice, saves land in call order with
// no temporary file left behind, and a damaged file is moved aside instead of stopping alerting.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { alertingConfigSchema } from './config-schema.ts';
import { escalate, policyFor, recordNotifications, startEscalation } from './escalation.ts';
import { createStateStore, emptyState, stateFileName } from './store.ts';
import type { Alert } from './types.ts';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'parley-alerting-store-'));
  dirs.push(dir);
  return dir;
}

const config = alertingConfigSchema.parse({
  channels: [
    { name: 'mail', type: 'email', smtp: { port: 2525 }, to: ['oncall@localhost'] },
    { name: 'hook', type: 'webhook', url: 'http://127.0.0.1:9099/alerts' },
  ],
});
const now = Date.parse('2024-06-03T10:00:00Z');
const alert: Alert = { id: 'f1', name: 'ReplicationStopped', severity: 'critical', node: 'node2', summary: 'node2 stopped replaying WAL', startsAt: new Date(now).toISOString(), status: 'firing' };

test('a page saved before a restart is not paged again after it, and the next level still comes', async () => {
  // Proves issue 8 point 5 at the store level: write, reload, escalate at the same now → no duplicate.
  const dir = await freshDir();
  const channels = config.channels.map((c) => c.name);
  const policy = policyFor(alert, config.policies);
  const context = { policy, rota: config.rota, channels, acks: {} };
  const first = escalate(alert, { ...context, state: startEscalation(now), now });
  assert.equal(first.notify.length, 1);
  const state = emptyState();
  state.alerts[alert.id] = { alert, escalation: recordNotifications(startEscalation(now), first.notify, now), outbox: [] };
  await createStateStore(dir).save(state);

  const reloaded = await createStateStore(dir).load();
  assert.equal(reloaded.problem, undefined);
  assert.deepEqual(reloaded.state, state);
  const record = reloaded.state.alerts[alert.id]!;
  assert.deepEqual(escalate(record.alert, { ...context, state: record.escalation, now }).notify, []);
  const later = escalate(record.alert, { ...context, state: record.escalation, now: now + 5 * 60_000 });
  assert.deepEqual(later.notify.map((n) => n.level), [1]);
});

test('saves land in call order and leave no temporary file', async () => {
  // Proves serialized atomic writes: the file ends at the last call's view.
  const dir = await freshDir();
  const store = createStateStore(dir);
  const saves = [];
  for (let i = 0; i < 20; i++) {
    const state = emptyState();
    state.heartbeat.lastSentAtMs = i;
    saves.push(store.save(state));
  }
  await Promise.all(saves);
  assert.deepEqual(await readdir(dir), [stateFileName]);
  assert.equal(JSON.parse(await readFile(join(dir, stateFileName), 'utf8')).heartbeat.lastSentAtMs, 19);
});

test('a damaged state file is moved aside and alerting starts empty, saying so', async () => {
  // Proves a torn or hand-edited file never keeps alerting from starting, and is kept for a person.
  const dir = await freshDir();
  await writeFile(join(dir, stateFileName), '{"version": 1, "alerts": ');
  await writeFile(join(dir, `.${stateFileName}.123.0.tmp`), 'left by a crash');
  const loaded = await createStateStore(dir).load();
  assert.deepEqual(loaded.state, emptyState());
  assert.match(loaded.problem ?? '', /was unusable \(not JSON/);
  const names = await readdir(dir);
  assert.equal(names.length, 1);
  assert.match(names[0]!, /^alerting-state\.json\.corrupt-/);
});

test('a missing directory or file is an empty state', async () => {
  // Proves the first start needs nothing prepared.
  const dir = join(await freshDir(), 'not', 'yet');
  const loaded = await createStateStore(dir).load();
  assert.deepEqual(loaded, { state: emptyState() });
});
