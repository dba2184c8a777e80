// `parley up` as an operator meets it: the real command started as a child process, on real
// PostgreSQL, with processes killed for real. Every wait is bounded; every process any test saw
// (from supervisor.json) is killed by pid in the `after` hooks, also when a test fails.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { freePort } from '../src/postgres/postgres.ts';
import { alive, cleanUp, cli, freePortRun, healthz, makeDir, readStateFile, startUp, waitUntil, waitUp, withParleyDatabase, type StateFile, type Up } from './harness.ts';

after(cleanUp);

// One node keeps these fast; the three-node cluster and its failover are test/failover.test.ts's.
const oneNode = { PARLEY_CLUSTER_NODES: '1' };

describe('parley up, one state directory through its life', () => {
  let dir = '';
  let port = 0;
  let pgPort = 0;
  let up: Up | undefined;
  let first: StateFile | undefined;

  before(async () => {
    dir = join(makeDir(), 'state');
    port = await freePort();
    pgPort = await freePort();
  });

  it('starts, answers /healthz and reports status --json in the documented shape', async () => {
    // Proves `up` brings PostgreSQL and an app server up as separate processes and `status --json` describes them.
    up = startUp(dir, port, pgPort, oneNode);
    first = await waitUp(up, dir);
    const output = up.output();
    assert.match(output, /node1: PostgreSQL \d+ primary ready on 127\.0\.0\.1:\d+/);
    assert.match(output, new RegExp(`app server 1: ready at http://127\\.0\\.0\\.1:${port}`));
    assert.equal(first.state, 'up');
    assert.equal(first.pid, up.child.pid);
    assert.equal(first.nodes.length, 1);
    assert.equal(first.appServers.length, 1);
    assert.ok(alive(first.nodes[0]!.pid) && alive(first.appServers[0]!.pid));
    assert.equal(await healthz(`http://127.0.0.1:${port}`), 200);

    const status = await cli(['status', '--dir', dir, '--json']);
    assert.equal(status.code, 0, status.stderr);
    const doc = JSON.parse(status.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc).sort(), ['alerts', 'appServers', 'lease', 'maintenance', 'nodes', 'primary', 'supervisor']);
    assert.equal((doc.lease as { holder: string; active: boolean }).holder, 'node1');
    assert.equal((doc.lease as { holder: string; active: boolean }).active, true);
    assert.equal(doc.primary, 'node1');
    assert.equal(doc.maintenance, null);
    assert.deepEqual(doc.alerts, []);
    const [node] = doc.nodes as Record<string, unknown>[];
    assert.deepEqual(Object.keys(node!), ['name', 'role', 'state', 'port', 'pid', 'agentPid', 'lsn', 'lagBytes', 'lagSeconds', 'sync']);
    assert.equal(node!.role, 'primary');
    assert.equal(node!.state, 'running');
    assert.equal(node!.port, pgPort);
    assert.equal(node!.pid, first.nodes[0]!.pid);
    assert.ok(alive(node!.agentPid as number), 'the node has a live agent');
    assert.match(String(node!.lsn), /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.deepEqual(doc.appServers, [{ url: `http://127.0.0.1:${port}`, pid: first.appServers[0]!.pid, state: 'ok' }]);

    const human = await cli(['status', '--dir', dir]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /node1\s+primary\s+running/);
  });

  it('refuses a second up on the same DIR with one line', async () => {
    // Proves two supervisors never share a state directory.
    assert.ok(first, 'needs the running up of the first test');
    const second = await cli(['up', '--dir', dir, '--port', String(await freePort())], { PARLEY_POSTGRES_BASE_PORT: String(await freePortRun(3)), PARLEY_OPS_PORT: '0' });
    assert.equal(second.code, 1);
    assert.match(second.stderr, /^parley: Parley is already running in .* \(supervisor pid \d+\)/);
    assert.equal(second.stderr.trim().split('\n').length, 1);
    assert.ok(alive(first.pid), 'the first supervisor still runs');
  });

  it('restarts an app server killed with -9', async () => {
    // Proves a crashed child is restarted: a new pid appears in supervisor.json and /healthz answers again.
    assert.ok(first, 'needs the running up of the first test');
    const oldPid = first.appServers[0]!.pid!;
    process.kill(oldPid, 'SIGKILL');
    let newPid = 0;
    await waitUntil('a new app server pid is recorded', () => {
      const pid = readStateFile(dir)?.appServers[0]?.pid;
      if (pid && pid !== oldPid && alive(pid)) newPid = pid;
      return newPid !== 0;
    });
    await waitUntil('/healthz answers again', async () => (await healthz(`http://127.0.0.1:${port}`)) === 200);
    assert.ok(!alive(oldPid));
    assert.match(up!.output(), /app server 1: exited \(signal SIGKILL\); restarting/);
  });

  it('restarts PostgreSQL killed with -9', async () => {
    // Proves the node's agent restarts its database: a new postmaster pid is recorded and answers as primary.
    const oldPid = readStateFile(dir)!.nodes[0]!.pid!;
    process.kill(oldPid, 'SIGKILL');
    await waitUntil('a new PostgreSQL pid is recorded', () => {
      const pid = readStateFile(dir)?.nodes[0]?.pid;
      return Boolean(pid && pid !== oldPid && alive(pid));
    });
    await waitUntil('status shows node1 running as primary again', async () => {
      const status = await cli(['status', '--dir', dir, '--json']);
      const doc = JSON.parse(status.stdout || '{}') as { primary?: string; nodes?: { state: string }[] };
      return doc.primary === 'node1' && doc.nodes?.[0]?.state === 'running';
    });
    assert.match(readFileSync(join(dir, 'journal.jsonl'), 'utf8'), /"node":"node1".*"action":"start","result":"done"/);
  });

  it('operator add marks an existing account and refuses an unknown one in one line', async () => {
    // Proves `parley operator add` sets accounts.is_operator through the superuser, and names a missing account.
    await withParleyDatabase(dir, pgPort, (client) =>
      client.query("INSERT INTO parley.accounts (username, display_name, password_hash) VALUES ('olga', 'Olga', 'not-a-real-hash')"),
    );
    const added = await cli(['operator', 'add', 'olga', '--dir', dir]);
    assert.equal(added.code, 0, added.stderr);
    const flag = await withParleyDatabase(dir, pgPort, (client) => client.query<{ is_operator: boolean }>("SELECT is_operator FROM parley.accounts WHERE username = 'olga'"));
    assert.equal(flag.rows[0]?.is_operator, true);
    const unknown = await cli(['operator', 'add', 'nobody', '--dir', dir]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^parley: no account named "nobody"/);
    assert.equal(unknown.stderr.trim().split('\n').length, 1);
  });

  it('down stops the supervisor, PostgreSQL and the app server', async () => {
    // Proves `parley down` leaves no process behind and removes supervisor.json.
    const state = readStateFile(dir);
    assert.ok(state && up);
    const down = await cli(['down', '--dir', dir]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(await up.exited, 0);
    for (const pid of [state.pid, ...state.nodes.map((n) => n.pid), ...state.appServers.map((a) => a.pid)]) {
      assert.ok(!alive(pid), `pid ${pid} is gone`);
    }
    assert.equal(existsSync(join(dir, 'supervisor.json')), false);
    const again = await cli(['down', '--dir', dir]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^parley: Parley is not running in /);
  });

  it('after kill -9 of the supervisor its children exit by themselves, and the next up starts and keeps the data', async () => {
    // Proves no orphan outlives a killed supervisor: the app server exits, the agent stops its PostgreSQL and exits; data survives.
    const killed = startUp(dir, port, pgPort, oneNode);
    const state = await waitUp(killed, dir);
    const appPid = state.appServers[0]!.pid!;
    const strayPid = state.nodes[0]!.pid!;
    killed.child.kill('SIGKILL');
    await killed.exited;
    await waitUntil('the orphaned app server exits', () => !alive(appPid));
    await waitUntil('the orphaned agent stops its PostgreSQL', () => !alive(strayPid));
    await waitUntil('the orphaned agent exits', () => !alive(state.nodes[0]!.agentPid));

    up = startUp(dir, port, pgPort, oneNode);
    const next = await waitUp(up, dir);
    assert.notEqual(next.nodes[0]!.pid, strayPid);
    const kept = await withParleyDatabase(dir, pgPort, (client) => client.query<{ is_operator: boolean }>("SELECT is_operator FROM parley.accounts WHERE username = 'olga'"));
    assert.equal(kept.rows[0]?.is_operator, true, 'the account written before down and kill -9 is still there');

    const down = await cli(['down', '--dir', dir]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(await up.exited, 0);
    for (const pid of [next.pid, next.nodes[0]!.pid, next.appServers[0]!.pid]) assert.ok(!alive(pid), `pid ${pid} is gone`);
  });
});

test('up refuses a busy port with one line naming it, and starts nothing', async () => {
  // Proves a port conflict is a clear one-line error rather than a half-started system.
  const dir = join(makeDir(), 'state');
  const blocker = createServer();
  const port = await new Promise<number>((resolve) =>
    blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as { port: number }).port)),
  );
  try {
    const result = await cli(['up', '--dir', dir, '--port', String(port)], { PARLEY_POSTGRES_BASE_PORT: String(await freePortRun(3)), PARLEY_OPS_PORT: '0' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`^parley: port ${port} on 127\\.0\\.0\\.1 is already in use, needed for app server 1`));
    assert.equal(result.stderr.trim().split('\n').length, 1);
    assert.equal(existsSync(join(dir, 'supervisor.json')), false);
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
});

test('config check accepts a good file and names every bad key, one line each', async () => {
  // Proves `parley config check` prints "ok: FILE" or one line per problem naming the key, exiting 1.
  const dir = makeDir();
  const good = join(dir, 'good.yaml');
  const bad = join(dir, 'bad.yaml');
  writeFileSync(good, 'cluster:\n  nodes: 3\nhttp:\n  port: 8080\n');
  writeFileSync(bad, 'cluster:\n  nodes: 0\n  leaseTtlMs: "soon"\nhttp:\n  colour: blue\n');
  // A PARLEY_* variable in the test's own environment must not change what the files say.
  const clean = Object.fromEntries(Object.keys(process.env).filter((key) => key.startsWith('PARLEY_')).map((key) => [key, '']));

  const ok = await cli(['config', 'check', good], clean);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout.trim(), `ok: ${good}`);
  // Valid but risky: warned about on stderr, one line each naming the key, and still ok.
  const risky = join(dir, 'risky.yaml');
  writeFileSync(risky, 'cluster:\n  nodes: 1\ndata:\n  queryTimeoutMs: 60000\n');
  const warned = await cli(['config', 'check', risky], clean);
  assert.equal(warned.code, 0, warned.stderr);
  assert.equal(warned.stdout.trim(), `ok: ${risky}`);
  const warnings = warned.stderr.trim().split('\n');
  assert.ok(warnings.every((line) => line.startsWith('parley: warning: ')), warned.stderr);
  for (const key of ['cluster.nodes', 'data.queryTimeoutMs']) assert.equal(warnings.filter((line) => line.includes(`${key}:`)).length, 1, warned.stderr);

  const broken = await cli(['config', 'check', bad], clean);
  assert.equal(broken.code, 1);
  const lines = broken.stderr.trim().split('\n');
  assert.ok(lines.every((line) => line.startsWith('parley: ')), broken.stderr);
  for (const key of ['cluster.nodes', 'cluster.leaseTtlMs', 'http.colour']) {
    assert.equal(lines.filter((line) => line.includes(key)).length, 1, `one line names ${key}:\n${broken.stderr}`);
  }

  const missing = await cli(['config', 'check', join(dir, 'absent.yaml')], clean);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^parley: .*absent\.yaml: cannot read/);
});
