// Runs the black-box checks against a running server:
//   node --import tsx test/blackbox/run.ts --url http://127.0.0.1:8080
// Prints one line per check and finally `N passed, M failed`; exits non-zero when anything failed.
import { parseArgs } from 'node:util';
import { runBlackbox } from './scenario.ts';

function usage(reason: string): never {
  console.error(`${reason}\nusage: node --import tsx test/blackbox/run.ts [--url http://127.0.0.1:8080]`);
  process.exit(2);
}

let url = 'http://127.0.0.1:8080';
try {
  const { values } = parseArgs({ options: { url: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) usage('Black-box checks of a running Parley server.');
  if (values.url !== undefined) url = values.url;
} catch (err) {
  usage(err instanceof Error ? err.message : String(err));
}
try {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') usage(`--url must be http(s), got ${url}`);
} catch {
  usage(`--url is not a URL: ${url}`);
}

console.error(`black-box checks against ${url}`);
const result = await runBlackbox(url, (line) => console.log(line));
console.log(`${result.passed.length} passed, ${result.failed.length} failed`);
process.exit(result.failed.length > 0 ? 1 : 0);
