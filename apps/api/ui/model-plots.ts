// The model page's plots: every succeeded job on the model as one point, "quality vs size" (x: the compressed model's
// bytes, the dense model at its own size) and, where latency was measured, "quality vs latency" (x: p50 at the
// smallest batch), one series per quality measure, so that recipes compare at a glance. Like plots.ts these run in
// the browser from their source: self-contained functions, calling only each other and plots.ts's escapeXml.
import { escapeXml, legendEntry, plotColor, plotFrame } from './plots.js';

export interface ScatterPoint {
  /** Job id, or "dense". */
  id: string;
  label: string;
  x: number;
  y: number;
}

export interface ScatterSeries {
  label: string;
  points: ScatterPoint[];
}

interface JobLike {
  id: string;
  state: string;
  recipe?: Record<string, unknown>;
  metrics?: any;
}

/** "sparsity 2:4 wanda", "quantize int4 g32": a recipe in a few words, for plot labels and tables. */
export function recipeLabel(recipe: any): string {
  if (!recipe || typeof recipe !== 'object') return '?';
  const parts: string[] = [String(recipe.method)];
  if (recipe.pattern) parts.push(String(recipe.pattern));
  else if (typeof recipe.sparsity === 'number') parts.push(Math.round(recipe.sparsity * 100) + '%');
  if (recipe.criterion) parts.push(String(recipe.criterion));
  if (recipe.quant && recipe.quant.bits) {
    parts.push('int' + recipe.quant.bits + (recipe.quant.groupSize ? ' g' + recipe.quant.groupSize : ''));
  }
  if (recipe.mode) parts.push(String(recipe.mode));
  return parts.join(' ');
}

/** Quality measures of one job's metrics: [series label, dense value, compressed value]. */
export function qualityMeasures(metrics: any): [string, number, number][] {
  const q = metrics && metrics.quality;
  if (!q || q.evaluated === false) return [];
  const out: [string, number, number][] = [];
  const d = q.dense || {};
  const c = q.compressed || {};
  if (typeof c.accuracy === 'number' && typeof d.accuracy === 'number')
    out.push(['accuracy (labels)', d.accuracy, c.accuracy]);
  if (typeof q.top1Agreement === 'number') out.push(['top-1 agreement with dense', 1, q.top1Agreement]);
  if (typeof q.cosineSimilarity === 'number') out.push(['output cosine similarity', 1, q.cosineSimilarity]);
  return out;
}

/**
 * One series per quality measure: the dense model once (at x = dense size, or dense latency), then every succeeded
 * job that has the measure. `axis` picks x: model bytes, or p50 milliseconds at the first latency row.
 */
export function modelSeries(jobs: JobLike[], axis: 'size' | 'latency'): ScatterSeries[] {
  const byLabel: Record<string, ScatterSeries> = {};
  const order: string[] = [];
  for (const j of jobs) {
    if (j.state !== 'succeeded' || !j.metrics) continue;
    let xDense: number | undefined;
    let xJob: number | undefined;
    if (axis === 'size') {
      xDense = j.metrics.sizes && j.metrics.sizes.inputBytes;
      xJob = j.metrics.sizes && j.metrics.sizes.outputBytes;
    } else {
      const row = j.metrics.latency && j.metrics.latency.measured !== false && (j.metrics.latency.rows || [])[0];
      xDense = row && row.dense && row.dense.p50;
      xJob = row && row.compressed && row.compressed.p50;
    }
    if (typeof xDense !== 'number' || typeof xJob !== 'number') continue;
    for (const [label, dense, value] of qualityMeasures(j.metrics)) {
      if (!byLabel[label]) {
        byLabel[label] = { label, points: [{ id: 'dense', label: 'dense', x: xDense, y: dense }] };
        order.push(label);
      }
      byLabel[label].points.push({ id: j.id, label: recipeLabel(j.recipe), x: xJob, y: value });
    }
  }
  return order.map((l) => byLabel[l]);
}

/** A scatter plot; each point carries data-job (its job id) and a tooltip with its recipe. */
export function scatterSvg(title: string, xLabel: string, series: ScatterSeries[], xUnit: 'bytes' | 'ms'): string {
  const W = 620;
  const H = 320;
  const L = 60;
  const R = 190;
  const T = 30;
  const B = 50;
  const kind = xUnit === 'bytes' ? 'quality-vs-size' : 'quality-vs-latency';
  const head =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" ` +
    `aria-label="${escapeXml(title)}" data-plot="${kind}">` +
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(title)}</text>`;
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    return (
      head + `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" font-size="12">no evaluated job yet</text></svg>`
    );
  }
  const xs = (v: number) =>
    xUnit === 'bytes'
      ? v >= 1024 * 1024
        ? (v / 1024 ** 2).toFixed(1) + ' MiB'
        : (v / 1024).toFixed(1) + ' KiB'
      : v.toFixed(2) + ' ms';
  const maxX = Math.max(...all.map((p) => p.x)) * 1.1 || 1;
  const box = { W, H, L, R, T, B };
  const { x, y, axes } = plotFrame(
    box,
    all.map((p) => p.y),
    maxX,
    xs,
    xLabel,
  );
  let svg = head + axes;
  series.forEach((s, i) => {
    const c = plotColor(i);
    for (const p of s.points) {
      const shape =
        p.id === 'dense'
          ? `<rect x="${x(p.x) - 5}" y="${y(p.y) - 5}" width="10" height="10" fill="none" stroke="${c}" stroke-width="2"`
          : `<circle cx="${x(p.x)}" cy="${y(p.y)}" r="5" fill="${c}"`;
      svg +=
        `${shape} data-series="${escapeXml(s.label)}" data-job="${escapeXml(p.id)}" data-x="${p.x}" data-y="${p.y}">` +
        `<title>${escapeXml(`${p.label}: ${s.label} ${p.y.toFixed(4)} at ${xs(p.x)}`)}</title>` +
        (p.id === 'dense' ? '</rect>' : '</circle>');
    }
    svg += legendEntry(box, i, c, s.label);
  });
  svg += `<text x="${W - R + 10}" y="${T + series.length * 18 + 12}" font-size="10">□ dense · ● a job</text>`;
  return svg + '</svg>';
}
