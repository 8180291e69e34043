// pareto.svg: quality against size (and against latency where measured) for every trial of a search, the front
// joined by a line, the chosen point ringed, the budget as a dashed line and the dense model as a square. Written
// as SVG text by hand (no plotting dependency); every label is escaped.
import type { SearchPoint } from './front.js';

export interface ParetoPlot {
  points: SearchPoint[];
  /** The budget metric's name, e.g. "perplexity". */
  metricName: string;
  dense: { bytes: number; metric: number; latency: number | null };
  /** Metric value at the budget's edge. */
  budgetLine: number;
  chosenTrial: number | null;
  title: string;
}

const W = 560;
const H = 380;
const PAD = { left: 70, right: 20, top: 40, bottom: 50 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a >= 1000 || a === 0 ? v.toFixed(0) : a >= 1 ? v.toPrecision(4) : v.toPrecision(3);
}

function extent(values: number[]): [number, number] {
  const fin = values.filter(Number.isFinite);
  let lo = Math.min(...fin);
  let hi = Math.max(...fin);
  if (!fin.length) return [0, 1];
  if (hi === lo) {
    lo -= Math.abs(lo) * 0.1 || 1;
    hi += Math.abs(hi) * 0.1 || 1;
  }
  const m = (hi - lo) * 0.08;
  return [lo - m, hi + m];
}

interface Axis {
  x: (p: SearchPoint) => number | null;
  dense: number | null;
  label: string;
}

function panel(plot: ParetoPlot, axis: Axis, offsetX: number): string {
  const pts = plot.points.filter((p) => axis.x(p) !== null && Number.isFinite(p.metric));
  const xs = [...pts.map((p) => axis.x(p)!), ...(axis.dense !== null ? [axis.dense] : [])];
  const ys = [...pts.map((p) => p.metric), plot.dense.metric, plot.budgetLine];
  const [x0, x1] = extent(xs);
  const [y0, y1] = extent(ys);
  const sx = (v: number) => offsetX + PAD.left + ((v - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const sy = (v: number) => H - PAD.bottom - ((v - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const out: string[] = [];
  const left = offsetX + PAD.left;
  const right = offsetX + W - PAD.right;
  out.push(
    `<rect x="${left}" y="${PAD.top}" width="${right - left}" height="${H - PAD.top - PAD.bottom}" fill="#fff" stroke="#999"/>`,
  );
  for (let i = 0; i <= 4; i++) {
    const xv = x0 + ((x1 - x0) * i) / 4;
    const yv = y0 + ((y1 - y0) * i) / 4;
    out.push(`<text x="${sx(xv).toFixed(1)}" y="${H - PAD.bottom + 16}" text-anchor="middle">${esc(fmt(xv))}</text>`);
    out.push(`<text x="${left - 6}" y="${(sy(yv) + 4).toFixed(1)}" text-anchor="end">${esc(fmt(yv))}</text>`);
  }
  out.push(`<text x="${(left + right) / 2}" y="${H - 12}" text-anchor="middle">${esc(axis.label)}</text>`);
  out.push(
    `<text x="${offsetX + 16}" y="${(H / 2).toFixed(0)}" text-anchor="middle" transform="rotate(-90 ${offsetX + 16} ${H / 2})">${esc(plot.metricName)}</text>`,
  );
  const by = sy(plot.budgetLine).toFixed(1);
  out.push(
    `<line class="budget" x1="${left}" x2="${right}" y1="${by}" y2="${by}" stroke="#c00" stroke-dasharray="6 4"/>`,
  );
  out.push(`<text x="${right - 4}" y="${Number(by) - 4}" text-anchor="end" fill="#c00">budget</text>`);
  const front = frontFor(pts, axis);
  if (front.length > 1) {
    const d = front.map((p, i) => `${i ? 'L' : 'M'}${sx(axis.x(p)!).toFixed(1)},${sy(p.metric).toFixed(1)}`).join(' ');
    out.push(`<path class="front" d="${d}" fill="none" stroke="#36c"/>`);
  }
  if (axis.dense !== null) {
    const dx = sx(axis.dense);
    const dy = sy(plot.dense.metric);
    out.push(
      `<rect class="dense" x="${(dx - 5).toFixed(1)}" y="${(dy - 5).toFixed(1)}" width="10" height="10" fill="#333"><title>dense</title></rect>`,
    );
  }
  for (const p of pts) {
    const cx = sx(axis.x(p)!).toFixed(1);
    const cy = sy(p.metric).toFixed(1);
    const fill = p.withinBudget ? '#2a2' : 'none';
    const tip = `trial ${p.trial} (${p.kind}): ${fmt(p.bytes / 1e6)} MB, ${plot.metricName} ${fmt(p.metric)}`;
    out.push(
      `<circle class="point" cx="${cx}" cy="${cy}" r="4" fill="${fill}" stroke="#2a2"><title>${esc(tip)}</title></circle>`,
    );
    if (p.trial === plot.chosenTrial)
      out.push(`<circle class="chosen" cx="${cx}" cy="${cy}" r="9" fill="none" stroke="#c00" stroke-width="2"/>`);
  }
  return out.join('\n');
}

/** The front along this panel's x axis (latency fronts differ from size fronts). */
function frontFor(pts: SearchPoint[], axis: Axis): SearchPoint[] {
  const sorted = [...pts].sort((a, b) => axis.x(a)! - axis.x(b)! || a.delta - b.delta);
  const out: SearchPoint[] = [];
  let best = Infinity;
  for (const p of sorted) {
    if (p.delta >= best) continue;
    out.push(p);
    best = p.delta;
  }
  return out;
}

export function paretoSvg(plot: ParetoPlot): string {
  const axes: Axis[] = [{ x: (p) => p.bytes / 1e6, dense: plot.dense.bytes / 1e6, label: 'size on disk (MB)' }];
  if (plot.points.some((p) => p.latency?.batch1 != null))
    axes.push({ x: (p) => p.latency?.batch1 ?? null, dense: plot.dense.latency, label: 'latency p50, batch 1 (ms)' });
  const width = W * axes.length;
  const legend =
    'filled: within budget · hollow: over budget · ring: chosen · square: dense · dashed: budget · line: front';
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H + 20}" viewBox="0 0 ${width} ${H + 20}" font-family="sans-serif" font-size="11">`,
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">${esc(plot.title)}</text>`,
    ...axes.map((a, i) => panel(plot, a, i * W)),
    `<text x="${width / 2}" y="${H + 14}" text-anchor="middle" fill="#555">${esc(legend)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
