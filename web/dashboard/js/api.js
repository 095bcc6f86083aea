// Calls to the manager's REST API with the user's bearer token. The token
// lives in sessionStorage: this tab only, gone when it closes.
const KEY = 'flotilla.token';

export class AuthError extends Error {}

export function token() { return sessionStorage.getItem(KEY) || ''; }
export function setToken(value) { sessionStorage.setItem(KEY, value.trim()); }
export function forgetToken() { sessionStorage.removeItem(KEY); }

// GET `path` (e.g. "/v1/nodes") as JSON. Throws AuthError on 401 (the
// token is forgotten), Error with the server's message otherwise.
export async function get(path) {
  const res = await fetch(path, {
    headers: { Authorization: 'Bearer ' + token() },
    cache: 'no-store',
    credentials: 'omit',
  });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) {
    forgetToken();
    throw new AuthError(body.error || 'the token was not accepted');
  }
  if (!res.ok) throw new Error(body.error || `${path}: HTTP ${res.status}`);
  return body;
}
