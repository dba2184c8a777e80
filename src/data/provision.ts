// Provisioning, run by `parley up` as the superuser: the app's role and database, then every
// pending migration. Idempotent: run it on every start.
import pg from 'pg';
import { migrations, type Migration } from './migrations.ts';

/** Name of the database and of the role the app servers log in as. */
export const appDatabaseName = 'parley';
export const appRoleName = 'parley_app';

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** Builds a connection URL on 127.0.0.1. */
export function databaseUrl(options: { port: number; user: string; password: string; database: string; host?: string }): string {
  return `postgres://${encodeURIComponent(options.user)}:${encodeURIComponent(options.password)}@${options.host ?? '127.0.0.1'}:${options.port}/${encodeURIComponent(options.database)}`;
}

/** Creates (or updates the password of) the app role and the database; applies migrations. */
export async function provisionDatabase(options: {
  /** Superuser URL to the `postgres` database of the primary. */
  superuserUrl: string;
  appPassword: string;
  database?: string;
  list?: readonly Migration[];
}): Promise<{ applied: number[] }> {
  const database = options.database ?? appDatabaseName;
  const admin = new pg.Client({ connectionString: options.superuserUrl });
  await admin.connect();
  try {
    const role = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [appRoleName]);
    const verb = role.rowCount ? 'ALTER' : 'CREATE';
    await admin.query(
      `${verb} ROLE ${ident(appRoleName)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD ${literal(options.appPassword)}`,
    );
    const db = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!db.rowCount) await admin.query(`CREATE DATABASE ${ident(database)}`);
  } finally {
    await admin.end();
  }

  const url = new URL(options.superuserUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  const applied: number[] = [];
  try {
    await client.query('SELECT pg_advisory_lock(4242)');
    await client.query(`
      CREATE SCHEMA IF NOT EXISTS parley;
      REVOKE ALL ON SCHEMA public FROM PUBLIC;
      CREATE TABLE IF NOT EXISTS parley.schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      );
      GRANT USAGE ON SCHEMA parley TO ${ident(appRoleName)};
      ALTER DEFAULT PRIVILEGES IN SCHEMA parley GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${ident(appRoleName)};
      ALTER DEFAULT PRIVILEGES IN SCHEMA parley GRANT USAGE, SELECT ON SEQUENCES TO ${ident(appRoleName)};
      ALTER ROLE ${ident(appRoleName)} IN DATABASE ${ident(database)} SET search_path = parley;
    `);
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM parley.schema_migrations')).rows.map((r) => r.version));
    for (const migration of options.list ?? migrations) {
      if (done.has(migration.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query('SET LOCAL search_path = parley');
        await client.query(migration.sql);
        await client.query('INSERT INTO parley.schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
        await client.query('COMMIT');
        applied.push(migration.version);
      } catch (error) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${migration.version} (${migration.name}) failed: ${(error as Error).message}`, { cause: error });
      }
    }
    // The schema_migrations table is the superuser's alone; the app reads it for /readyz.
    await client.query(`REVOKE INSERT, UPDATE, DELETE ON parley.schema_migrations FROM ${ident(appRoleName)}`);
    await client.query('SELECT pg_advisory_unlock(4242)');
  } finally {
    await client.end();
  }
  return { applied };
}
