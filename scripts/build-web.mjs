// Builds the web client (web/) into web/dist with Vite, only when web/dist is older than its
// sources, so `npm start` and `npm test` (their pre-scripts) cost nothing when it is up to date.
// `--force` always builds. Without Vite (an install without dev dependencies) an existing
// web/dist is kept as it is.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const web = join(repo, 'web');
const dist = join(web, 'dist');
const stamp = join(dist, 'index.html');
const sources = ['src', 'public', 'index.html', 'vite.config.mjs', 'tsconfig.json'].map((name) => join(web, name));
/** Files looked at when deciding; a tree larger than this is a mistake, not a web client. */
const sourceFilesMax = 2000;

function newestMtimeMs(paths) {
  let newest = 0;
  let seen = 0;
  const visit = (path) => {
    if (!existsSync(path)) return;
    const stat = statSync(path);
    if (++seen > sourceFilesMax) throw new Error(`web/ has more than ${sourceFilesMax} source files; is node_modules or dist inside web/src?`);
    if (stat.isDirectory()) for (const name of readdirSync(path)) visit(join(path, name));
    else newest = Math.max(newest, stat.mtimeMs);
  };
  for (const path of paths) visit(path);
  return newest;
}

function report() {
  const assets = join(dist, 'assets');
  const files = existsSync(assets) ? readdirSync(assets) : [];
  const size = (ext) =>
    files
      .filter((name) => name.endsWith(ext))
      .reduce((sum, name) => {
        const bytes = readFileSync(join(assets, name));
        return { raw: sum.raw + bytes.length, gzip: sum.gzip + gzipSync(bytes, { level: 9 }).length };
      }, { raw: 0, gzip: 0 });
  const js = size('.js');
  const css = size('.css');
  const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
  console.log(`web: built web/dist: JS ${kb(js.raw)} (${kb(js.gzip)} gzip), CSS ${kb(css.raw)} (${kb(css.gzip)} gzip)`);
}

const force = process.argv.includes('--force');
const builtMs = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
if (!force && builtMs > 0 && builtMs >= newestMtimeMs(sources)) {
  process.exit(0);
}

let vite;
try {
  vite = await import('vite');
} catch {
  if (builtMs > 0) {
    console.warn('web: Vite is not installed (no dev dependencies?); serving the existing web/dist');
    process.exit(0);
  }
  console.error('web: cannot build the web client: Vite is not installed; run `npm ci` first');
  process.exit(1);
}

try {
  await vite.build({ configFile: join(web, 'vite.config.mjs'), logLevel: 'warn' });
} catch (error) {
  console.error(`web: the build of web/ failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
report();
