// Tiny DOM and SVG builders. Text always goes in as text nodes, never as
// HTML, so names and output from the federation cannot inject markup.
const SVG_NS = 'http://www.w3.org/2000/svg';

function build(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// h('td', {class: 'num'}, 'text', childNode, ...)
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
export const s = (tag, attrs, ...children) =>
  build(document.createElementNS(SVG_NS, tag), attrs, children);

// Replaces `node`'s children with `children` (nested arrays flattened,
// null/undefined/false skipped).
export function fill(node, ...children) {
  node.replaceChildren();
  return build(node, {}, children);
}

export function badge(state) { return h('span', { class: `badge ${state}` }, state); }

export function bytes(n) {
  if (!n) return '0';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function cores(millis) { return `${(millis / 1000).toFixed(millis % 1000 ? 1 : 0)} cores`; }

export function when(ms) { return ms ? new Date(ms).toLocaleTimeString() : '–'; }

export function duration(fromMs, toMs) {
  if (!fromMs) return '–';
  const d = (toMs || Date.now()) - fromMs;
  return d < 1000 ? `${d} ms` : d < 60000 ? `${(d / 1000).toFixed(1)} s` : `${Math.round(d / 60000)} min`;
}

// A horizontal bar: `used` of `total`, with a label under it.
export function bar(label, used, total, fmt) {
  const w = 200;
  const frac = total > 0 ? Math.min(1, Math.max(0, used / total)) : 0;
  return h('div', { class: 'bar' },
    s('svg', { width: w, height: 10, viewBox: `0 0 ${w} 10`, role: 'img',
               'aria-label': `${label} ${Math.round(frac * 100)}% used` },
      s('rect', { class: 'bar-bg', x: 0, y: 0, width: w, height: 10 }),
      s('rect', { class: `bar-used${frac > 0.85 ? ' high' : ''}`, x: 0, y: 0,
                  width: Math.round(frac * w), height: 10 })),
    h('div', { class: 'bar-label' }, `${label}: ${fmt(total - used)} free of ${fmt(total)}`));
}

// Runs `fn` now and then every `ms` after each run ends, until the
// returned function is called.
export function every(ms, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try { await fn(); } finally { if (!stopped) timer = setTimeout(tick, ms); }
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

export const TERMINAL = new Set(['succeeded', 'failed', 'timed_out', 'cancelled']);
