// Executions: the newest first, refreshed every 2 s, filtered by state; a
// row opens the execution's page.
import { failed, refreshed } from '../app.js';
import { get } from '../api.js';
import { badge, duration, every, fill, h, when } from '../dom.js';

const STATES = ['', 'queued', 'assigned', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled'];

export function render(main) {
  const filter = h('select', { id: 'state-filter' },
    STATES.map((st) => h('option', { value: st }, st || 'all states')));
  const body = h('tbody', {});
  const table = h('table', { id: 'executions' },
    h('thead', {}, h('tr', {}, ['id', 'name', 'state', 'node', 'attempts', 'submitted', 'took']
      .map((c) => h('th', {}, c)))),
    body);
  main.append(h('h1', {}, 'Executions'),
    h('div', { class: 'toolbar' }, h('label', {}, 'state ', filter)), table);
  // A change of filter loads at once, beside the timer's own load: only the
  // latest answer is drawn, so an older one cannot land after it.
  let latest = 0;
  const load = async () => {
    const mine = ++latest;
    try {
      const q = filter.value ? `&state=${encodeURIComponent(filter.value)}` : '';
      const { executions } = await get(`/v1/executions?limit=100${q}`);
      if (mine !== latest) return;
      fill(body, ...executions.map((e) => h('tr', { 'data-id': e.id },
        h('td', {}, h('a', { href: `#/executions/${encodeURIComponent(e.id)}` }, e.id)),
        h('td', {}, e.name || e.function || ''),
        h('td', {}, badge(e.state)),
        h('td', {}, e.node || '–'),
        h('td', { class: 'num' }, e.attempts),
        h('td', {}, when(e.submitted_unix_ms)),
        h('td', { class: 'num' }, duration(e.started_unix_ms, e.finished_unix_ms)))));
      if (executions.length === 0) {
        body.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'no executions')));
      }
      refreshed();
    } catch (err) { failed(err); }
  };
  const stop = every(2000, load);
  filter.addEventListener('change', () => load());
  return stop;
}
