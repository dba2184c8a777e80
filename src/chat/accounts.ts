// Accounts and sessions. Tokens are 32 random bytes shown once to the client and stored only as
// their SHA-256, so the sessions table cannot be replayed.
import { createHash, randomBytes } from 'node:crypto';
import type { Database } from '../data/data.ts';
import { ParleyError } from '../errors/errors.ts';
import { hashPassword, verifyPassword } from './passwords.ts';
import type { AccountView } from './shapes.ts';

/** The signed-in caller. */
export interface Caller extends AccountView {
  isOperator: boolean;
}

interface AccountRow {
  id: string;
  username: string;
  display_name: string;
  is_operator: boolean;
}

function toAccount(row: AccountRow): AccountView {
  return { id: String(row.id), username: row.username, displayName: row.display_name };
}

function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** Registers an account; 409 when the username is taken. */
export async function createAccount(
  db: Database,
  input: { username: string; password: string; displayName?: string | undefined },
): Promise<AccountView> {
  const passwordHash = await hashPassword(input.password);
  const result = await db.query<AccountRow>(
    `INSERT INTO accounts (username, display_name, password_hash) VALUES ($1, $2, $3)
     ON CONFLICT (username) DO NOTHING
     RETURNING id, username, display_name, is_operator`,
    [input.username, input.displayName ?? input.username, passwordHash],
  );
  const row = result.rows[0];
  if (!row) throw new ParleyError('conflict', `The username "${input.username}" is taken`);
  return toAccount(row);
}

/** Checks a password and opens a session; 401 on any mismatch (without saying which part). */
export async function createSession(
  db: Database,
  input: { username: string; password: string },
  options: { sessionTtlHours: number },
): Promise<{ token: string; account: AccountView }> {
  const found = await db.query<AccountRow & { password_hash: string }>(
    'SELECT id, username, display_name, is_operator, password_hash FROM accounts WHERE username = $1',
    [input.username],
  );
  const row = found.rows[0];
  const ok = await verifyPassword(input.password, row?.password_hash);
  if (!row || !ok) throw new ParleyError('unauthorized', 'Wrong username or password');
  const token = randomBytes(32).toString('base64url');
  await db.query(
    `INSERT INTO sessions (token_hash, account_id, expires_at) VALUES ($1, $2, now() + make_interval(hours => $3))`,
    [tokenHash(token), row.id, options.sessionTtlHours],
  );
  return { token, account: toAccount(row) };
}

/** The account behind a bearer token, and when its session expires (ms since the epoch); 401 when unknown or expired. */
export async function lookUpSession(db: Database, token: string): Promise<{ caller: Caller; expiresAtMs: number }> {
  if (!/^[A-Za-z0-9_-]{20,100}$/.test(token)) throw new ParleyError('unauthorized', 'The token is not valid; sign in again');
  const result = await db.query<AccountRow & { expires_at: Date }>(
    `SELECT a.id, a.username, a.display_name, a.is_operator, s.expires_at
       FROM sessions s JOIN accounts a ON a.id = s.account_id
      WHERE s.token_hash = $1 AND s.expires_at > now()`,
    [tokenHash(token)],
    'parley_look_up_session',
  );
  const row = result.rows[0];
  if (!row) throw new ParleyError('unauthorized', 'The token is not valid or has expired; sign in again');
  return { caller: { ...toAccount(row), isOperator: row.is_operator }, expiresAtMs: row.expires_at.getTime() };
}

/** Ends the session of `token`; afterwards the token no longer works anywhere. */
export async function deleteSession(db: Database, token: string): Promise<void> {
  await db.query('DELETE FROM sessions WHERE token_hash = $1', [tokenHash(token)]);
}

/** Gives an account the operator role; 404 when there is no such account. */
export async function grantOperator(db: Database, username: string): Promise<AccountView> {
  const result = await db.query<AccountRow>(
    'UPDATE accounts SET is_operator = true WHERE username = $1 RETURNING id, username, display_name, is_operator',
    [username],
  );
  const row = result.rows[0];
  if (!row) throw new ParleyError('not_found', `No account named "${username}"`);
  return toAccount(row);
}

/** Looks up accounts by username; 400 naming the unknown ones. */
export async function accountsByUsername(db: Database, usernames: readonly string[]): Promise<AccountView[]> {
  const unique = [...new Set(usernames)];
  const result = await db.query<AccountRow>(
    'SELECT id, username, display_name, is_operator FROM accounts WHERE username = ANY($1::text[])',
    [unique],
  );
  const found = new Set(result.rows.map((r) => r.username));
  const missing = unique.filter((u) => !found.has(u));
  if (missing.length > 0) {
    throw new ParleyError('validation_failed', `No account named ${missing.map((m) => `"${m}"`).join(', ')}`);
  }
  return result.rows.map(toAccount);
}
