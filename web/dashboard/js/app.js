// The dashboard's shell: the token prompt, the navigation and a hash router
// (#/federation, #/executions, #/executions/ID, #/workflows,
// #/workflows/ID, #/functions). Each page renders into <main> and returns a
// function that stops its polling when the user moves on.
import { AuthError, forgetToken, get, setToken, token } from './api.js';
import { h } from './dom.js';
import * as federation from './pages/federation.js';
import * as executions from './pages/executions.js';
import * as execution from './pages/execution.js';
import * as workflows from './pages/workflows.js';
import * as workflow from './pages/workflow.js';
import * as functions from './pages/functions.js';

const main = document.getElementById('main');
const login = document.getElementById('login');
const loginError = document.getElementById('login-error');
const status = document.getElementById('status');
let stop = () => {};

const ROUTES = [
  [/^#\/federation$/, 'federation', () => federation],
  [/^#\/executions$/, 'executions', () => executions],
  [/^#\/executions\/(.+)$/, 'executions', () => execution],
  [/^#\/workflows$/, 'workflows', () => workflows],
  [/^#\/workflows\/(.+)$/, 'workflows', () => workflow],
  [/^#\/functions$/, 'functions', () => functions],
];

function showLogin(why) {
  stop();
  stop = () => {};
  main.replaceChildren();
  login.hidden = false;
  document.getElementById('logout').hidden = true;
  loginError.textContent = why || '';
  document.getElementById('token').focus();
}

// Called by pages when a poll fails: a refused token goes back to the
// prompt, anything else is shown and the page keeps polling.
export function failed(err) {
  if (err instanceof AuthError) return showLogin(err.message);
  status.textContent = `error: ${err.message}`;
}

export function refreshed() { status.textContent = `updated ${new Date().toLocaleTimeString()}`; }

function route() {
  if (!token()) return showLogin('');
  login.hidden = true;
  document.getElementById('logout').hidden = false;
  const hash = location.hash || '#/federation';
  stop();
  for (const [re, nav, page] of ROUTES) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('header nav a')) {
      a.classList.toggle('active', a.dataset.page === nav);
    }
    main.replaceChildren();
    stop = page().render(main, m[1] ? decodeURIComponent(m[1]) : undefined) || (() => {});
    return;
  }
  main.replaceChildren(h('p', { class: 'error' }, `no page ${hash}`));
}

login.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  setToken(document.getElementById('token').value);
  try {
    await get('/v1/nodes');  // checks the token before showing anything
  } catch (err) {
    forgetToken();
    return showLogin(err.message);
  }
  document.getElementById('token').value = '';
  route();
});
document.getElementById('logout').addEventListener('click', () => { forgetToken(); showLogin(''); });
window.addEventListener('hashchange', route);
route();
