// One workflow: its DAG of pieces drawn in SVG, each box coloured by the
// piece's state and labelled with its node and time, redrawn every 2 s
// until the workflow ends.
import { failed, refreshed } from '../app.js';
import { get } from '../api.js';
import { badge, every, fill, h, s, TERMINAL } from '../dom.js';

const BOX_W = 176;
const BOX_H = 46;
const GAP_X = 60;
const GAP_Y = 18;

// Columns by longest path from a source (pieces come in topological order;
// a piece no edge names gets the column after its predecessor in the list).
function layout(pieces, edges) {
  const level = new Map(pieces.map((p) => [p.id, 0]));
  const preds = new Map(pieces.map((p) => [p.id, []]));
  for (const e of edges) if (preds.has(e.to) && level.has(e.from)) preds.get(e.to).push(e.from);
  for (const p of pieces) {
    for (const from of preds.get(p.id)) level.set(p.id, Math.max(level.get(p.id), level.get(from) + 1));
  }
  if (edges.length === 0) pieces.forEach((p, i) => level.set(p.id, i));
  const rows = new Map();
  const pos = new Map();
  for (const p of pieces) {
    const col = level.get(p.id);
    const row = rows.get(col) || 0;
    rows.set(col, row + 1);
    pos.set(p.id, { x: 10 + col * (BOX_W + GAP_X), y: 10 + row * (BOX_H + GAP_Y) });
  }
  const cols = Math.max(1, ...[...level.values()].map((l) => l + 1));
  const maxRows = Math.max(1, ...rows.values());
  return { pos, width: 20 + cols * BOX_W + (cols - 1) * GAP_X, height: 20 + maxRows * (BOX_H + GAP_Y) };
}

function draw(wf) {
  const edges = wf.edges || [];
  const { pos, width, height } = layout(wf.pieces, edges);
  const svg = s('svg', { id: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
                         'aria-label': `DAG of ${wf.pieces.length} pieces` },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5,
                                markerWidth: 8, markerHeight: 8, orient: 'auto' },
      s('path', { class: 'arrow', d: 'M0,0 L10,5 L0,10 z' }))));
  for (const e of edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + BOX_W, y1 = a.y + BOX_H / 2, x2 = b.x, y2 = b.y + BOX_H / 2;
    const mx = (x1 + x2) / 2;
    svg.append(s('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
                           'marker-end': 'url(#arrow)' }));
  }
  for (const p of wf.pieces) {
    const { x, y } = pos.get(p.id);
    const where = p.node_id || (p.nodes && p.nodes[0]) || '';
    const took = !p.duration_ms ? '' : p.duration_ms < 1000 ? `${p.duration_ms} ms`
      : `${(p.duration_ms / 1000).toFixed(1)} s`;
    svg.append(s('g', { class: `piece ${p.state}`, 'data-piece': p.id,
                        transform: `translate(${x},${y})` },
      s('title', {}, `${p.id} (${p.kind}): ${p.state}${p.error ? ' — ' + p.error : ''}`),
      s('rect', { width: BOX_W, height: BOX_H }),
      s('text', { x: 8, y: 17 }, p.id.length > 22 ? p.id.slice(0, 21) + '…' : p.id),
      s('text', { class: 'sub', x: 8, y: 34 },
        [p.state, where, took].filter(Boolean).join(' · '))));
  }
  return svg;
}

export function render(main, id) {
  const head = h('div', {});
  const canvas = h('div', {});
  const table = h('div', {});
  main.append(h('p', {}, h('a', { href: '#/workflows' }, '← workflows')),
    h('h1', {}, `Workflow ${id}`), head, canvas,
    h('p', { class: 'legend' }, ['pending', 'running', 'succeeded', 'failed', 'cancelled']
      .map((st) => h('span', {}, badge(st)))), table);
  let stop = () => {};
  stop = every(2000, async () => {
    try {
      const { workflow: wf } = await get(`/v1/workflows/${encodeURIComponent(id)}`);
      fill(head, h('p', {}, badge(wf.state), ` ${wf.kind}`,
        wf.function ? ` of ${wf.function}` : '', wf.reason ? ` — ${wf.reason}` : ''),
        wf.error ? h('pre', {}, wf.error.message || JSON.stringify(wf.error)) : null);
      fill(canvas, draw(wf));
      fill(table, h('table', { id: 'pieces' },
        h('thead', {}, h('tr', {}, ['piece', 'kind', 'state', 'nodes', 'attempts', 'executions']
          .map((c) => h('th', {}, c)))),
        h('tbody', {}, wf.pieces.map((p) => h('tr', {},
          h('td', {}, p.id), h('td', {}, p.kind), h('td', {}, badge(p.state)),
          h('td', {}, (p.nodes || []).join(', ')), h('td', { class: 'num' }, p.attempts),
          h('td', {}, (p.executions || []).slice(0, 5).map((x) =>
            h('a', { href: `#/executions/${encodeURIComponent(x)}` }, x, ' ')),
            (p.executions || []).length > 5 ? `+${p.executions.length - 5}` : ''))))));
      refreshed();
      if (TERMINAL.has(wf.state)) stop();
    } catch (err) { failed(err); }
  });
  return () => stop();
}
