// Federation: every node, in one column per region, with its status, free
// CPU and memory against capacity, trust, isolation kinds, checkpointing
// and warm pools.
import { failed, refreshed } from '../app.js';
import { get } from '../api.js';
import { badge, bar, bytes, cores, every, fill, h, s } from '../dom.js';

function nodeCard(n) {
  const cap = n.capacity;
  const free = n.free;
  const tags = [`trust ${n.trust}`, ...n.isolation, ...n.capabilities];
  if (n.unisolated) tags.push('UNISOLATED');
  if (n.draining) tags.push('draining');
  if (n.checkpoint.state === 'available') tags.push('checkpoint');
  return h('div', { class: 'node', 'data-node': n.id },
    h('div', { class: 'title' }, h('span', {}, n.id), badge(n.status)),
    h('div', { class: 'muted' }, `${n.running} running${n.zone ? ' · zone ' + n.zone : ''}`),
    bar('CPU', cap.cpu_millis - free.cpu_millis, cap.cpu_millis, cores),
    bar('memory', cap.memory_bytes - free.memory_bytes, cap.memory_bytes, bytes),
    h('div', { class: 'tags' }, tags.map((t) => h('span', {}, t))),
    n.warm_pools.length === 0 ? null : h('table', { class: 'pools' },
      h('tr', {}, h('th', {}, 'warm pool'), h('th', { class: 'num' }, 'idle'),
        h('th', { class: 'num' }, 'busy'), h('th', { class: 'num' }, 'hit rate')),
      n.warm_pools.map((p) => h('tr', {}, h('td', {}, p.template), h('td', { class: 'num' }, p.idle),
        h('td', { class: 'num' }, p.busy),
        h('td', { class: 'num' }, `${Math.round(p.hit_rate * 100)}%`)))));
}

// A schematic map: one island per region, one dot per node (green online,
// red offline, hollow when draining), so the shape of the federation reads
// at a glance before the columns below give the details.
function regionMap(byRegion) {
  const names = [...byRegion.keys()].sort();
  const W = 170, H = 70, GAP = 16;
  const width = Math.max(1, names.length) * (W + GAP);
  return s('svg', { id: 'region-map', width, height: H + 8, viewBox: `0 0 ${width} ${H + 8}`,
                    role: 'img', 'aria-label': `${names.length} regions` },
    names.map((r, i) => {
      const nodes = byRegion.get(r);
      const x = i * (W + GAP) + 4;
      return s('g', { class: 'island', 'data-region': r },
        s('rect', { x, y: 4, width: W, height: H, rx: 28 }),
        s('text', { x: x + W / 2, y: 24, 'text-anchor': 'middle' }, r),
        nodes.map((n, k) => s('circle', {
          class: `dot ${n.status}${n.draining ? ' draining' : ''}`,
          cx: x + W / 2 + (k - (nodes.length - 1) / 2) * 18, cy: 48, r: 6 },
          s('title', {}, `${n.id}: ${n.status}, ${n.running} running`))));
    }));
}

export function render(main) {
  const regions = h('div', { class: 'regions', id: 'regions' });
  const summary = h('p', { class: 'muted' }, 'loading…');
  const map = h('div', { class: 'map' });
  main.append(h('h1', {}, 'Federation'), summary, map, regions);
  return every(2000, async () => {
    try {
      const { nodes } = await get('/v1/nodes');
      const byRegion = new Map();
      for (const n of nodes) {
        const r = n.region || '(no region)';
        if (!byRegion.has(r)) byRegion.set(r, []);
        byRegion.get(r).push(n);
      }
      const online = nodes.filter((n) => n.status === 'online').length;
      summary.textContent = `${nodes.length} nodes (${online} online) in ${byRegion.size} regions`;
      fill(map, regionMap(byRegion));
      fill(regions, ...[...byRegion.keys()].sort().map((r) =>
        h('section', { class: 'region', 'data-region': r },
          h('h3', {}, `region ${r}`),
          byRegion.get(r).sort((a, b) => a.id.localeCompare(b.id)).map(nodeCard))));
      refreshed();
    } catch (err) { failed(err); }
  });
}
