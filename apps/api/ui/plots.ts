// SVG plots of a job report, as plain functions of the report data: "quality vs size" (dense and compressed model)
// and "per-layer error" (relative output error of each compressed layer). The job page runs these same functions
// in the browser (routes.ts serves their source), so what the tests check is what users see. Keep every function
// here self-contained: no imports, no module-level values, only calls to the other functions in this file.

export interface PlotReport {
  sizes?: { inputBytes?: number; outputBytes?: number };
  quality?: {
    evaluated?: boolean;
    top1Agreement?: number;
    cosineSimilarity?: number;
    relativeError?: number;
    dense?: { accuracy?: number };
    compressed?: { accuracy?: number };
    [k: string]: unknown;
  };
  layers?: { name: string; node?: string; relError?: number | null; skipped?: string; pattern?: string }[];
}

export interface QualitySeries {
  label: string;
  points: { name: string; bytes: number; value: number }[];
}

export function escapeXml(s: string): string {
  return String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 * 1024) return (n / 1024 ** 3).toFixed(2) + ' GiB';
  if (n >= 1024 * 1024) return (n / 1024 ** 2).toFixed(2) + ' MiB';
  if (n >= 1024) return (n / 1024).toFixed(1) + ' KiB';
  return n + ' B';
}

/** The quality measures the report has, each as a dense → compressed pair of (size, value) points. */
export function qualitySeries(report: PlotReport): QualitySeries[] {
  const q = report.quality;
  const dense = report.sizes?.inputBytes;
  const comp = report.sizes?.outputBytes;
  if (!q || q.evaluated === false || typeof dense !== 'number' || typeof comp !== 'number') return [];
  const out: QualitySeries[] = [];
  const pair = (label: string, d: number, c: number) =>
    out.push({
      label,
      points: [
        { name: 'dense', bytes: dense, value: d },
        { name: 'compressed', bytes: comp, value: c },
      ],
    });
  if (typeof q.dense?.accuracy === 'number' && typeof q.compressed?.accuracy === 'number') {
    pair('accuracy (labels)', q.dense.accuracy, q.compressed.accuracy);
  }
  // Agreement measures compare with the dense model itself, which agrees with itself fully.
  if (typeof q.top1Agreement === 'number') pair('top-1 agreement with dense', 1, q.top1Agreement);
  if (typeof q.cosineSimilarity === 'number') pair('output cosine similarity', 1, q.cosineSimilarity);
  return out;
}

/** The i-th series' colour. A function, not a constant: the pages' script is built from these functions' text. */
export function plotColor(i: number): string {
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  return colors[i % colors.length];
}

/** A scatter plot's box: width, height and the left/right/top/bottom margins. */
export interface PlotBox {
  W: number;
  H: number;
  L: number;
  R: number;
  T: number;
  B: number;
}

/**
 * The frame the job page's and the model page's scatter plots share: x from 0 to `maxX`, y over the values padded by
 * 10 % (±0.05 when they are all equal), both axes with five labelled ticks and the x axis's label.
 */
export function plotFrame(
  box: PlotBox,
  values: number[],
  maxX: number,
  xTick: (v: number) => string,
  xLabel: string,
): { x: (v: number) => number; y: (v: number) => number; axes: string } {
  const { W, H, L, R, T, B } = box;
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < 1e-6) {
    lo -= 0.05;
    hi += 0.05;
  }
  const pad = (hi - lo) * 0.1;
  lo -= pad;
  hi += pad;
  const x = (v: number) => L + (v / maxX) * (W - L - R);
  const y = (v: number) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  let axes = `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/>`;
  axes += `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>`;
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    const b = (maxX * i) / 4;
    axes += `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end" font-size="10">${v.toFixed(3)}</text>`;
    axes += `<text x="${x(b)}" y="${H - B + 14}" text-anchor="middle" font-size="10">${escapeXml(xTick(b))}</text>`;
  }
  axes += `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle" font-size="11">${escapeXml(xLabel)}</text>`;
  return { x, y, axes };
}

/** One legend row (a swatch and the series' name) to the right of the plot. */
export function legendEntry(box: PlotBox, i: number, color: string, label: string): string {
  const { W, R, T } = box;
  return (
    `<rect x="${W - R + 10}" y="${T + i * 18}" width="10" height="10" fill="${color}"/>` +
    `<text x="${W - R + 24}" y="${T + i * 18 + 9}" font-size="10">${escapeXml(label)}</text>`
  );
}

export function qualityVsSizeSvg(report: PlotReport): string {
  const series = qualitySeries(report);
  const W = 520;
  const H = 300;
  const L = 60;
  const R = 170;
  const T = 30;
  const B = 50;
  const head =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `role="img" aria-label="Quality vs size" data-plot="quality-vs-size">` +
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">Quality vs size</text>`;
  if (series.length === 0) {
    return head + `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" font-size="12">not evaluated</text></svg>`;
  }
  const all = series.flatMap((s) => s.points);
  const maxBytes = Math.max(...all.map((p) => p.bytes)) * 1.1 || 1;
  const box = { W, H, L, R, T, B };
  const { x, y, axes } = plotFrame(
    box,
    all.map((p) => p.value),
    maxBytes,
    formatBytes,
    'model size',
  );
  let svg = head + axes;
  series.forEach((s, i) => {
    const c = plotColor(i);
    const [p0, p1] = s.points;
    svg += `<polyline fill="none" stroke="${c}" stroke-width="2" points="${x(p0.bytes)},${y(p0.value)} ${x(p1.bytes)},${y(p1.value)}"/>`;
    for (const p of s.points) {
      svg +=
        `<circle cx="${x(p.bytes)}" cy="${y(p.value)}" r="4" fill="${c}" data-series="${escapeXml(s.label)}" ` +
        `data-point="${p.name}" data-value="${p.value}" data-bytes="${p.bytes}">` +
        `<title>${escapeXml(`${s.label}, ${p.name}: ${p.value.toFixed(4)} at ${formatBytes(p.bytes)}`)}</title></circle>`;
    }
    svg += legendEntry(box, i, c, s.label);
  });
  return svg + '</svg>';
}

/** Horizontal bars: one per layer with a measured relative error (skipped layers are left out). */
export function layerErrorSvg(report: PlotReport): string {
  const rows = (report.layers ?? []).filter((l) => !l.skipped && typeof l.relError === 'number') as {
    name: string;
    node?: string;
    relError: number;
  }[];
  const W = 620;
  const rowH = 16;
  const L = 220;
  const T = 30;
  const H = T + Math.max(1, rows.length) * rowH + 30;
  let svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" ` +
    `aria-label="Per-layer error" data-plot="layer-error">` +
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">Per-layer relative error ‖X(W−Ŵ)‖/‖XW‖</text>`;
  if (rows.length === 0) {
    return (
      svg +
      `<text x="${W / 2}" y="${T + 14}" text-anchor="middle" font-size="12">no per-layer errors measured</text></svg>`
    );
  }
  const max = Math.max(...rows.map((r) => r.relError)) || 1;
  const barW = W - L - 80;
  rows.forEach((r, i) => {
    const yy = T + i * rowH;
    const w = Math.max(1, (r.relError / max) * barW);
    // Labelled by the node that uses the weight (its name says where it sits), the weight's name in the tooltip.
    const label = r.node ? r.node : r.name;
    const name = label.length > 34 ? '…' + label.slice(-33) : label;
    svg += `<text x="${L - 6}" y="${yy + 11}" text-anchor="end" font-size="10">${escapeXml(name)}</text>`;
    svg +=
      `<rect x="${L}" y="${yy + 2}" width="${w.toFixed(1)}" height="${rowH - 4}" fill="#ff7f0e" ` +
      `data-layer="${escapeXml(r.name)}" data-node="${escapeXml(label)}" data-value="${r.relError}">` +
      `<title>${escapeXml(label === r.name ? label : `${label} (weight ${r.name})`)}: ${r.relError.toPrecision(4)}</title></rect>`;
    svg += `<text x="${L + w + 4}" y="${yy + 11}" font-size="10">${r.relError.toPrecision(3)}</text>`;
  });
  return svg + '</svg>';
}
