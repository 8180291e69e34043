// What the job and model pages say about a result, as plain functions of the job's metrics and report: the summary
// numbers, the latency table, the stages, the recipe, the event log lines and the layer labels. The pages run these
// same functions in the browser (routes.ts serves their source), so the unit tests check what users read. Keep every
// function self-contained: no imports, no module-level values, only calls to other functions of this file or of
// plots.ts.

export interface SummaryRow {
  key: string;
  label: string;
  value: string;
}

export interface UiLayer {
  name: string;
  node?: string;
  op?: string;
  shape?: number[];
  skipped?: string | null;
  bitsPerWeight?: number | null;
  relError?: number | null;
  sparsity?: number | null;
  pattern?: string | null;
}

/** A number for people: `digits` significant digits, "—" when there is none. */
export function fmtNum(v: unknown, digits = 4): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '—';
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}

export function fmtPct(v: unknown): string {
  return typeof v === 'number' && Number.isFinite(v) ? (v * 100).toFixed(1) + '%' : '—';
}

export function fmtBytesOrDash(v: unknown): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '—';
  if (v >= 1024 * 1024 * 1024) return (v / 1024 ** 3).toFixed(2) + ' GiB';
  if (v >= 1024 * 1024) return (v / 1024 ** 2).toFixed(2) + ' MiB';
  if (v >= 1024) return (v / 1024).toFixed(1) + ' KiB';
  return v + ' B';
}

/** Layers are labelled by the node that uses the weight ("/encoder/fc1/MatMul"), not the weight ("onnx::MatMul_435"). */
export function layerLabel(l: UiLayer): string {
  return l.node ? String(l.node) : String(l.name);
}

/** Mean bits per weight over the compressed layers, weighted by each layer's element count; null when unknown. */
export function meanBitsPerWeight(layers: UiLayer[] | undefined): number | null {
  let bits = 0;
  let n = 0;
  for (const l of layers ?? []) {
    if (l.skipped || typeof l.bitsPerWeight !== 'number' || !Number.isFinite(l.bitsPerWeight)) continue;
    const count = (l.shape ?? []).reduce((a, b) => a * b, 1) || 1;
    bits += l.bitsPerWeight * count;
    n += count;
  }
  return n > 0 ? bits / n : null;
}

/**
 * The numbers of a finished job, in reading order: size before → after, sparsity, bits per weight, then quality
 * (or why it was not measured). Sizes and sparsity are shown whether or not the job was evaluated.
 */
export function summaryRows(metrics: any, report?: any): SummaryRow[] {
  const m = metrics ?? {};
  const rows: SummaryRow[] = [];
  const add = (key: string, label: string, value: string) => rows.push({ key, label, value });
  const sizes = m.sizes ?? {};
  if (typeof sizes.inputBytes === 'number' && typeof sizes.outputBytes === 'number') {
    const ratio = sizes.inputBytes > 0 ? sizes.outputBytes / sizes.inputBytes : null;
    add(
      'size',
      'Model size',
      fmtBytesOrDash(sizes.inputBytes) +
        ' → ' +
        fmtBytesOrDash(sizes.outputBytes) +
        (ratio !== null ? ' (' + fmtNum(ratio, 3) + '× the dense size)' : ''),
    );
  }
  if (typeof sizes.weightSparsity === 'number') {
    add(
      'sparsity',
      'Weight sparsity',
      fmtPct(sizes.weightSparsity) + ' of ' + fmtNum(sizes.parameters, 6) + ' weights',
    );
  }
  const bits = meanBitsPerWeight(report && report.layers);
  if (bits !== null) add('bits', 'Bits per weight (compressed layers)', fmtNum(bits, 3));
  const s = m.summary ?? {};
  if (typeof s.compressedLayers === 'number') {
    add('layers', 'Layers', s.compressedLayers + ' compressed, ' + (s.skippedLayers ?? 0) + ' skipped');
  }
  const q = m.quality ?? {};
  if (q.evaluated === false || Object.keys(q).length === 0) {
    add('quality', 'Quality', 'not evaluated' + (q.reason ? ': ' + q.reason : ''));
  } else {
    if (typeof q.relativeError === 'number')
      add('relError', 'Output error vs dense ‖ŷ−y‖/‖y‖', fmtNum(q.relativeError));
    if (typeof q.cosineSimilarity === 'number') add('cosine', 'Output cosine similarity', fmtNum(q.cosineSimilarity));
    if (typeof q.top1Agreement === 'number') add('top1', 'Top-1 agreement with dense', fmtPct(q.top1Agreement));
    const d = q.dense ?? {};
    const c = q.compressed ?? {};
    if (typeof c.accuracy === 'number')
      add('accuracy', 'Accuracy dense → compressed', fmtPct(d.accuracy) + ' → ' + fmtPct(c.accuracy));
    if (typeof c.perplexity === 'number') {
      add('perplexity', 'Perplexity dense → compressed', fmtNum(d.perplexity) + ' → ' + fmtNum(c.perplexity));
    }
    if (typeof c.bitsPerToken === 'number') {
      add('bitsPerToken', 'Bits per token dense → compressed', fmtNum(d.bitsPerToken) + ' → ' + fmtNum(c.bitsPerToken));
    }
    if (q.source) {
      add(
        'data',
        'Measured on',
        String(q.source) + (typeof q.samples === 'number' ? ', ' + q.samples + ' samples' : ''),
      );
    }
  }
  if (typeof m.seconds === 'number') add('seconds', 'Engine time', fmtNum(m.seconds, 3) + ' s');
  return rows;
}

export interface LatencyView {
  measured: boolean;
  note: string;
  rows: { batch: number; dense: string; compressed: string; speedup: string; slower: boolean }[];
}

/** The report's latency section as table rows; `slower` flags a compressed model slower than the dense one. */
export function latencyView(latency: any): LatencyView | null {
  if (!latency) return null;
  if (latency.measured === false || !Array.isArray(latency.rows)) {
    return { measured: false, note: String(latency.reason ?? 'not measured'), rows: [] };
  }
  const ms = (x: any) => (x ? fmtNum(x.p50, 3) + ' / ' + fmtNum(x.p95, 3) + ' ms' : '—');
  return {
    measured: true,
    note:
      'p50 / p95 on ' +
      String(latency.executionProvider ?? '?') +
      (latency.note ? '. ' + latency.note : '') +
      (Array.isArray(latency.skipped)
        ? latency.skipped.map((k: any) => '. Batch ' + String(k.batch) + ': ' + String(k.reason)).join('')
        : ''),
    rows: latency.rows.map((r: any) => ({
      batch: r.batch,
      dense: ms(r.dense),
      compressed: ms(r.compressed),
      speedup: fmtNum(r.speedup, 3) + '×',
      slower: !!r.slower,
    })),
  };
}

/** report.stages as rows: name, seconds, peak memory, execution provider, calibration passes. */
export function stageRows(stages: any): string[][] {
  if (!Array.isArray(stages)) return [];
  return stages.map((s: any) => [
    String(s.name),
    fmtNum(s.seconds, 3) + ' s',
    typeof s.peakRssBytes === 'number' ? fmtBytesOrDash(s.peakRssBytes) : '—',
    s.executionProvider ? String(s.executionProvider) : '—',
    typeof s.passes === 'number' ? String(s.passes) : '—',
  ]);
}

/** The recipe as "key: value" lines ("quant.groupSize: 32"), in the recipe's order. */
export function recipeEntries(recipe: any, prefix = ''): [string, string][] {
  const out: [string, string][] = [];
  if (!recipe || typeof recipe !== 'object') return out;
  for (const k of Object.keys(recipe)) {
    const v = recipe[k];
    const key = prefix ? prefix + '.' + k : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) out.push(...recipeEntries(v, key));
    else out.push([key, Array.isArray(v) ? v.join(', ') : String(v)]);
  }
  return out;
}

/** One line of the events panel, e.g. "running · compress 45% · layer 3/12 /fc1/MatMul · compressing". */
export function eventText(event: string, d: any): string {
  const parts: string[] = [];
  if (event === 'state') {
    parts.push(String(d.state));
    if (d.error && d.error.code) parts.push(d.error.code + ': ' + d.error.message);
  }
  const fraction = event === 'state' ? d.progress : d.fraction;
  if (d.stage) parts.push(d.stage + (typeof fraction === 'number' ? ' ' + Math.round(fraction * 100) + '%' : ''));
  const layer = event === 'state' ? d.detail && d.detail.layer : d.layer;
  if (layer && typeof layer.index === 'number')
    parts.push('layer ' + (layer.index + 1) + '/' + layer.total + ' ' + layer.name);
  const message = event === 'state' ? d.detail && d.detail.message : d.message;
  if (message) parts.push(String(message));
  return parts.join(' · ');
}

/**
 * The percentage shown beside a state: a job that is not finished never shows 100% (the last write of a running
 * job can say 1.0 before the row says succeeded), a succeeded one always does.
 */
export function shownPercent(state: string, fraction: unknown): number {
  const pct = Math.round(Math.max(0, Math.min(1, Number(fraction) || 0)) * 100);
  if (state === 'succeeded') return 100;
  if (state === 'queued' || state === 'running') return Math.min(99, pct);
  return pct;
}
