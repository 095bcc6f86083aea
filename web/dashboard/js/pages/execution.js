// One execution: its state and attempts, why it was placed where it was
// (every candidate node with the points each scorer gave it, or the filter
// that ruled it out), its usage while running, and the tail of its output.
import { failed, refreshed } from '../app.js';
import { get } from '../api.js';
import { badge, bytes, duration, every, fill, h, when, TERMINAL } from '../dom.js';

function facts(pairs) {
  return h('dl', { class: 'facts' },
    pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function placementTable(p) {
  const parts = [...new Set(p.candidates.flatMap((c) => Object.keys(c.parts)))].sort();
  return h('table', { id: 'placement' },
    h('thead', {}, h('tr', {}, h('th', {}, 'node'), h('th', { class: 'num' }, 'score'),
      parts.map((name) => h('th', { class: 'num' }, name)), h('th', {}, 'verdict'))),
    h('tbody', {}, p.candidates.map((c) => h('tr', {
      class: c.node === p.node ? 'chosen' : c.feasible ? '' : 'rejected', 'data-node': c.node },
      h('td', {}, c.node),
      h('td', { class: 'num' }, c.feasible ? c.score.toFixed(1) : '–'),
      parts.map((name) => h('td', { class: 'num' },
        name in c.parts ? c.parts[name].toFixed(1) : '')),
      h('td', {}, c.node === p.node ? 'chosen' : c.feasible ? 'feasible'
        : `rejected: ${c.rejected_because}`)))));
}

export function render(main, id) {
  const view = h('div', {}, h('p', { class: 'muted' }, 'loading…'));
  main.append(h('p', {}, h('a', { href: '#/executions' }, '← executions')),
    h('h1', {}, `Execution ${id}`), view);
  let stop = () => {};
  stop = every(2000, async () => {
    try {
      const { execution: e } = await get(`/v1/executions/${encodeURIComponent(id)}`);
      const out = e.output || {};
      fill(view,
        facts([['state', badge(e.state)], ['name', e.name], ['function', e.function],
          ['command', [e.command.runtime, ...e.command.argv].filter(Boolean).join(' ')],
          ['node', e.node], ['attempts', String(e.attempts)],
          ['submitted', when(e.submitted_unix_ms)],
          ['ran for', duration(e.started_unix_ms, e.finished_unix_ms)],
          ['exit', e.result ? `${e.result.termination} ${e.result.exit_code}` : ''],
          ['error', e.error || (e.result && e.result.error)]]),
        h('h2', {}, 'Placement'),
        e.placement
          ? [h('p', {}, `${e.placement.reason} (mode ${e.placement.mode || 'score'}` +
              `${e.placement.sampled ? ', on a sample of the nodes' : ''})`),
             placementTable(e.placement)]
          : h('p', { class: 'muted' }, 'not placed yet'),
        e.usage ? [h('h2', {}, 'Usage'), facts([
          ['cpu', `${e.usage.cpu_cores.toFixed(2)} cores`],
          ['memory', `${bytes(e.usage.memory_bytes)} of ${bytes(e.usage.memory_limit_bytes)}` +
            ` (peak ${bytes(e.usage.memory_peak_bytes)})`],
          ['risk', e.usage.risk.toFixed(2)], ['pressure', e.usage.pressure_reason],
          ['last resize', e.usage.last_resize]])] : null,
        h('h2', {}, 'Output'),
        out.truncated ? h('p', { class: 'muted' }, 'showing the end of the output') : null,
        h('pre', { id: 'stdout' }, out.stdout_tail || '(no output)'),
        out.stderr_tail ? [h('h2', {}, 'Standard error'), h('pre', { id: 'stderr' }, out.stderr_tail)]
          : null);
      refreshed();
      if (TERMINAL.has(e.state)) stop();
    } catch (err) { failed(err); }
  });
  return () => stop();
}
