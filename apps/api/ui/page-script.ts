// The job page's browser code (routes.ts serves it with the functions of plots.ts, format.ts and client.ts; no build
// step, no framework). Where a user reads a result, warnings first: the numbers (size, sparsity, bits per weight,
// quality), the latency table, the layers (by node name), the stages, the recipe, artifacts that download with the
// key, and a readable event log. It follows GET /v1/jobs/:id/events through fetch (EventSource cannot send an
// Authorization header) and reads report.json once the job has succeeded.
import { $, apiGet, askForKey, downloadWithKey, el, fillTable, storedKey } from './client.js';
import {
  eventText,
  fmtNum,
  fmtPct,
  latencyView,
  layerLabel,
  recipeEntries,
  shownPercent,
  stageRows,
  summaryRows,
} from './format.js';
import { layerErrorSvg, qualityVsSizeSvg } from './plots.js';
import { searchFrontHtml } from './search-view.js';

declare const location: any;

export function renderJobHead(job: any): void {
  $('state').textContent = job.state;
  $('state').className = 'state state-' + job.state;
  $('state').setAttribute('data-state', job.state);
  $('created').textContent = job.createdAt ?? '';
  $('ep').textContent = job.executionProvider ?? '—';
  $('model-link').textContent = job.modelId;
  $('model-link').setAttribute('href', '/models/' + encodeURIComponent(job.modelId));
  $('error').textContent = job.error ? job.error.code + ': ' + job.error.message : '';
  $('error').hidden = !job.error;
}

export function renderProgress(state: string, fraction: unknown, stage: string | null, layer?: any): void {
  const pct = shownPercent(state, fraction);
  $('bar').style.width = pct + '%';
  $('progress').setAttribute('data-percent', String(pct));
  $('percent').textContent = pct + '%';
  $('stage').textContent = stage ?? '';
  $('layer').textContent = layer ? 'layer ' + (layer.index + 1) + '/' + layer.total + ' ' + layer.name : '';
}

/** A search's progress: trial i/n and the best size so far, in place of the layer. */
export function renderTrial(detail: any): void {
  const t = detail && detail.trial;
  if (!t || !(t.index > 0)) return;
  $('layer').textContent =
    'trial ' +
    t.index +
    '/' +
    t.total +
    (detail.best ? ' · best so far ' + (detail.best.bytes / 1e6).toFixed(2) + ' MB' : '');
}

/** A search's plot (as an <img> from a data: URL: the page's CSP allows no other image source) and its front. */
export async function renderSearch(key: string, jobId: string, job: any): Promise<void> {
  const names = (job.artifacts ?? []).map((a: any) => a.name);
  if (!names.includes('pareto.svg') || !names.includes('report.json')) return;
  const base = '/v1/jobs/' + encodeURIComponent(jobId) + '/artifacts/';
  const svg = await (await apiGet(key, base + 'pareto.svg')).text();
  $('pareto').src = 'data:image/svg+xml;base64,' + btoa(unescape(encodeURIComponent(svg)));
  $('search-table').innerHTML = searchFrontHtml(await (await apiGet(key, base + 'report.json')).json());
  $('search').hidden = false;
  $('search').setAttribute('data-ready', 'true');
}

export function renderWarnings(warnings: string[]): void {
  const list = $('warning-list');
  list.textContent = '';
  for (const w of warnings) list.appendChild(el('li', w));
  $('warnings').hidden = warnings.length === 0;
}

export function renderResult(job: any, report: any): void {
  const m = job.metrics ?? {};
  const table = $('summary');
  table.textContent = '';
  for (const r of summaryRows(m, report)) {
    const tr = el('tr', undefined, { 'data-key': r.key });
    tr.appendChild(el('th', r.label));
    tr.appendChild(el('td', r.value));
    table.appendChild(tr);
  }
  const lat = latencyView(m.latency);
  $('latency-section').hidden = !lat;
  if (lat) {
    $('latency-note').textContent = lat.note;
    fillTable(
      $('latency'),
      ['batch', 'dense', 'compressed', 'speed-up', ''],
      lat.rows.map((r) => [String(r.batch), r.dense, r.compressed, r.speedup, r.slower ? 'slower than dense' : '']),
    );
    $('latency')
      .querySelectorAll('td')
      .forEach((td: any) => td.textContent === 'slower than dense' && td.setAttribute('class', 'slower'));
  }
  const stages = stageRows(report ? report.stages : m.stages);
  $('stages-section').hidden = stages.length === 0;
  fillTable($('stages'), ['stage', 'time', 'peak memory', 'execution provider', 'calibration passes'], stages);
  $('result').hidden = false;
}

export function renderLayers(report: any): void {
  const rows = (report.layers ?? []).map((l: any) => [
    layerLabel(l),
    String(l.op ?? ''),
    (l.shape ?? []).join('×'),
    l.skipped ? 'skipped: ' + l.skipped : String(l.pattern ?? ''),
    fmtPct(l.sparsity),
    fmtNum(l.bitsPerWeight, 3),
    fmtNum(l.relError),
  ]);
  fillTable($('layers'), ['layer (node)', 'op', 'shape', 'done', 'sparsity', 'bits/weight', 'output error'], rows);
  $('quality-plot').innerHTML = qualityVsSizeSvg(report);
  $('layer-plot').innerHTML = layerErrorSvg(report);
  $('plots').hidden = false;
  $('plots').setAttribute('data-ready', 'true');
}

export function renderRecipe(recipe: any): void {
  fillTable($('recipe'), ['key', 'value'], recipeEntries(recipe));
}

export function renderArtifacts(jobId: string, job: any, key: string): void {
  const list = $('artifacts');
  list.textContent = '';
  for (const a of job.artifacts ?? []) {
    const path = '/v1/jobs/' + encodeURIComponent(jobId) + '/artifacts/' + encodeURIComponent(a.name);
    const li = el('li');
    const link = el('a', a.name, { href: path, 'data-artifact': a.name, download: a.name });
    link.onclick = (ev: any) => {
      ev.preventDefault();
      downloadWithKey(key, path, a.name).catch((e: any) => {
        $('error').textContent = 'download failed: ' + e.message;
        $('error').hidden = false;
      });
    };
    li.appendChild(link);
    li.appendChild(el('span', ' (' + a.sizeBytes + ' bytes, sha256 ' + String(a.sha256).slice(0, 12) + '…)'));
    list.appendChild(li);
  }
  if (!(job.artifacts ?? []).length) list.appendChild(el('li', 'none yet'));
}

export function logEvent(event: string, data: any): void {
  const at = new Date().toLocaleTimeString();
  $('events').appendChild(el('li', at + '  ' + eventText(event, data)));
}

export function jobPageMain(): void {
  const jobId = decodeURIComponent(String(location.pathname).split('/').filter(Boolean).pop() ?? '');
  const TERMINAL = ['succeeded', 'failed', 'cancelled'];
  const path = '/v1/jobs/' + encodeURIComponent(jobId);
  let state = '';

  const show = async (key: string) => {
    const job: any = await (await apiGet(key, path)).json();
    state = job.state;
    $('job').hidden = false;
    renderJobHead(job);
    renderProgress(job.state, job.progress, job.stage, job.progressDetail && job.progressDetail.layer);
    renderRecipe(job.recipe);
    renderArtifacts(jobId, job, key);
    renderTrial(job.progressDetail);
    renderWarnings((job.metrics && job.metrics.warnings) || []);
    // A failed search still has its report and plot (budget-unreachable).
    if (TERMINAL.includes(job.state)) await renderSearch(key, jobId, job);
    if (job.state !== 'succeeded') return job;
    let report: any = null;
    if ((job.artifacts ?? []).some((a: any) => a.name === 'report.json')) {
      report = await (await apiGet(key, path + '/artifacts/report.json')).json();
    }
    renderResult(job, report);
    if (report) {
      renderWarnings(report.warnings || []);
      renderLayers(report);
    }
    return job;
  };

  const onEvent = (event: string, d: any) => {
    logEvent(event, d);
    if (event === 'state') {
      state = d.state;
      $('state').textContent = d.state;
      $('state').setAttribute('data-state-live', d.state);
      renderProgress(d.state, d.progress, d.stage, d.detail && d.detail.layer);
    } else if (event === 'progress') {
      renderProgress(state, d.fraction, d.stage, d.layer);
      renderTrial(d);
    }
  };

  /** Reads the SSE stream; returns when the server ends it (after the final state). */
  const follow = async (key: string) => {
    const res = await apiGet(key, path + '/events');
    const reader = (res.body as any).getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let sep;
      while ((sep = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, sep);
        buf = buf.slice(sep + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (data) onEvent(event, JSON.parse(data));
      }
    }
  };

  const start = async (key: string) => {
    $('error').hidden = true;
    try {
      const job = await show(key);
      if (!TERMINAL.includes(job.state)) {
        await follow(key);
        await show(key);
      }
    } catch (e: any) {
      if (e && e.status === 401) {
        askForKey('The key was refused (401): it is unknown or revoked.', (k) => void start(k));
        return;
      }
      $('error').textContent = String(e && e.message ? e.message : e);
      $('error').hidden = false;
    }
  };

  $('job-id').textContent = jobId;
  const key = storedKey();
  if (key) void start(key);
  else askForKey('No API key in this tab yet.', (k) => void start(k));
}
