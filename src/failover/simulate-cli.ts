// Runs the failover simulator from the command line:
//   node --import tsx src/failover/simulate-cli.ts --seeds 100000 [--seed S]   many schedules from seed S
//   node --import tsx src/failover/simulate-cli.ts --seed S --trace             one schedule, traced
// `--schedules N` is the same as `--seeds N` (issue 4's spelling for `npm run sim`). Prints schedules
// per second and every failing seed with the command that replays it; exits 1 on any violation.
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { describeSchedule, describeViolation, replay, simulate } from './simulator.ts';
import type { Violation } from './simulator.ts';

const usage = 'usage: simulate-cli.ts [--seeds N | --schedules N] [--seed S] [--trace]';

function main(): number {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string' },
      schedules: { type: 'string' },
      seed: { type: 'string' },
      trace: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const firstSeed = parseCount(values.seed ?? '1', '--seed');
  const many = values.seeds ?? values.schedules;
  const count = many === undefined ? (values.seed === undefined ? 10_000 : 1) : parseCount(many, '--seeds');

  if (count === 1 || values.trace) {
    const result = values.trace ? replay(firstSeed) : simulate(firstSeed);
    if (values.trace) for (const line of result.trace) console.log(line);
    else console.log(describeSchedule(result.schedule));
    console.log(
      `seed ${firstSeed}: ${result.violation === null ? 'ok' : 'VIOLATION'}; ${result.stats.decisions} decisions, ` +
        `${result.stats.promotions} promotions, ${result.stats.rollbacks} rollbacks, ${result.stats.acknowledgedBytes} bytes acknowledged`,
    );
    if (result.violation !== null) console.log(describeViolation(result.violation));
    if (count === 1) return result.violation === null ? 0 : 1;
  }

  const violations: Violation[] = [];
  const actions: Record<string, number> = {};
  const alerts: Record<string, number> = {};
  let promotions = 0;
  let rollbacks = 0;
  let decisions = 0;
  const started = performance.now();
  for (let i = 0; i < count; i += 1) {
    const result = simulate((firstSeed + i) >>> 0);
    promotions += result.stats.promotions;
    rollbacks += result.stats.rollbacks;
    decisions += result.stats.decisions;
    for (const [name, n] of Object.entries(result.stats.actions)) actions[name] = (actions[name] ?? 0) + n;
    for (const [name, n] of Object.entries(result.stats.alerts)) alerts[name] = (alerts[name] ?? 0) + n;
    if (result.violation !== null) {
      violations.push(result.violation);
      console.log(describeViolation(result.violation));
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${count} schedules (seeds ${firstSeed}..${firstSeed + count - 1}) in ${seconds.toFixed(2)} s: ` +
      `${Math.round(count / seconds)} schedules/s, ${Math.round(decisions / seconds)} decisions/s; ` +
      `${promotions} promotions, ${rollbacks} rollbacks; ${violations.length} violations`,
  );
  console.log(`actions: ${formatCounts(actions)}`);
  console.log(`alerts: ${formatCounts(alerts)}`);
  return violations.length === 0 ? 0 : 1;
}

function formatCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, n]) => `${name} ${n}`)
    .join(', ');
}

function parseCount(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    console.error(`${flag} must be a whole number from 0 to 4294967295, got "${text}"\n${usage}`);
    process.exit(2);
  }
  return value;
}

process.exitCode = main();
