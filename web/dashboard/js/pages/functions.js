// Functions: what each tenant deployed, its version and its annotations
// (split, geography, resource constraints), and its autoscaling when it has
// run.
import { failed, refreshed } from '../app.js';
import { get } from '../api.js';
import { every, fill, h, when } from '../dom.js';

function annotations(a) {
  if (!a) return '';
  const out = [];
  if (a.splitable) out.push('splitable');
  if (a.geo_preference) out.push(`geo ${a.geo_preference}`);
  const rc = a.resource_constraint || {};
  if (rc.cpu_millis) out.push(`cpu ${rc.cpu_millis}m`);
  if (rc.memory_bytes) out.push(`memory ${Math.round(rc.memory_bytes / 1048576)} MiB`);
  if (rc.timeout_ms) out.push(`timeout ${rc.timeout_ms / 1000} s`);
  return h('span', { class: 'tags' }, out.map((t) => h('span', {}, t)));
}

export function render(main) {
  const body = h('tbody', {});
  main.append(h('h1', {}, 'Functions'), h('table', { id: 'functions' },
    h('thead', {}, h('tr', {}, ['name', 'version', 'entrypoint', 'template', 'annotations',
      'scaling', 'updated'].map((c) => h('th', {}, c)))), body));
  return every(5000, async () => {
    try {
      const { functions } = await get('/v1/functions');
      fill(body, ...functions.map((f) => h('tr', { 'data-name': f.name },
        h('td', {}, f.name, f.description ? h('div', { class: 'muted' }, f.description) : null),
        h('td', { class: 'num' }, f.version), h('td', {}, f.entrypoint), h('td', {}, f.template),
        h('td', {}, annotations(f.annotations)),
        h('td', {}, f.scaling ? JSON.stringify(f.scaling) : '–'),
        h('td', {}, when(f.updated_unix_ms)))));
      if (functions.length === 0) {
        body.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'no functions deployed')));
      }
      refreshed();
    } catch (err) { failed(err); }
  });
}
