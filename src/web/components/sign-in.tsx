// Shown when the server was started with an API token and this browser has not given it yet: the
// token is traded for the server's session cookie, then the page loads again with it.

import { useState } from 'preact/hooks';
import { signIn } from '../api.ts';
import { Field } from './field.tsx';

export function SignIn() {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string>();
  const submit = (event: Event) => {
    event.preventDefault();
    signIn(token)
      .then(() => location.reload())
      .catch((e: Error) => setError(e.message));
  };
  return (
    <form class="panel sign-in" aria-label="Sign in" onSubmit={submit}>
      <p>This server needs its API token (the one given to <code>nuri serve --token</code>).</p>
      <Field label="API token" error={error}>
        {(id, describedBy) => (
          <input id={id} type="password" autocomplete="current-password" value={token} aria-describedby={describedBy} onInput={(e) => setToken(e.currentTarget.value)} />
        )}
      </Field>
      <button type="submit" disabled={!token}>
        Sign in
      </button>
    </form>
  );
}
