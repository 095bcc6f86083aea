// Workflows: function calls (split or whole) and hand-written DAGs, newest
// first, with how many of their pieces are done.
import { failed, refreshed } from '../app.js';
import { get } from '../api.js';
import { badge, duration, every, fill, h, when } from '../dom.js';

export function render(main) {
  const body = h('tbody', {});
  main.append(h('h1', {}, 'Workflows'), h('table', { id: 'workflows' },
    h('thead', {}, h('tr', {}, ['id', 'function', 'kind', 'state', 'pieces done', 'submitted', 'took']
      .map((c) => h('th', {}, c)))), body));
  return every(2000, async () => {
    try {
      const { workflows } = await get('/v1/workflows?limit=100');
      fill(body, ...workflows.map((w) => h('tr', { 'data-id': w.id },
        h('td', {}, h('a', { href: `#/workflows/${encodeURIComponent(w.id)}` }, w.id)),
        h('td', {}, w.function || '–'),
        h('td', {}, w.kind + (w.split ? ' (split)' : '')),
        h('td', {}, badge(w.state)),
        h('td', { class: 'num' },
          `${w.pieces.filter((p) => p.state === 'succeeded').length} / ${w.pieces.length}`),
        h('td', {}, when(w.submitted_unix_ms)),
        h('td', { class: 'num' }, duration(w.submitted_unix_ms, w.finished_unix_ms)))));
      if (workflows.length === 0) {
        body.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'no workflows')));
      }
      refreshed();
    } catch (err) { failed(err); }
  });
}
