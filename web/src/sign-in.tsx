// Sign in or create an account. The fields and buttons carry the names of API.md: Username,
// Password, Sign in, Create account.
import { useState } from 'preact/hooks';
import type { ParleyClient } from './client.ts';

/** The sign-in form. */
export function SignIn({ client }: { client: ParleyClient }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);

  async function run(action: 'signIn' | 'register'): Promise<void> {
    setBusy(true);
    setError(undefined);
    const problem = action === 'signIn' ? await client.signIn(username, password) : await client.register(username, password);
    setBusy(false);
    if (problem) setError(problem);
  }

  return (
    <main class="signin">
      <h1>Parley</h1>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          void run('signIn');
        }}
      >
        <label for="username">Username</label>
        <input
          id="username"
          name="username"
          autoComplete="username"
          autoCapitalize="none"
          spellcheck={false}
          value={username}
          onInput={(event) => setUsername(event.currentTarget.value)}
        />
        <label for="password">Password</label>
        <input
          id="password"
          name="password"
          type="password"
          autoComplete="current-password"
          value={password}
          onInput={(event) => setPassword(event.currentTarget.value)}
        />
        {client.signInNotice ? <p class="notice">{client.signInNotice}</p> : null}
        <p class="error" role="alert">
          {error ?? ''}
        </p>
        <div class="actions">
          <button type="submit" disabled={busy}>
            Sign in
          </button>
          <button type="button" class="secondary" disabled={busy} onClick={() => void run('register')}>
            Create account
          </button>
        </div>
        <p class="hint">New here? Choose a username (3–32 of a–z, 0–9, _ . -) and a password of 8 or more characters, then Create account.</p>
      </form>
    </main>
  );
}
