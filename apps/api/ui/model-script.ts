// The model page's browser code (/models/:id): the model's inspection, every job run on it (GET /v1/jobs?modelId=,
// all pages) with its key numbers and a link to its job page, and one quality-vs-size plot (quality-vs-latency
// where latency was measured) so that recipes compare at a glance. Served as source like page-script.ts.
import { $, apiGet, askForKey, el, fillTable, storedKey } from './client.js';
import { fmtNum, fmtPct } from './format.js';
import { modelSeries, qualityMeasures, recipeLabel, scatterSvg } from './model-plots.js';
import { formatBytes } from './plots.js';

declare const location: any;

export function renderInspection(model: any): void {
  const i = model.inspection ?? {};
  const rows: string[][] = [
    ['name', String(model.name)],
    ['size', formatBytes(model.sizeBytes) + (model.externalData?.length ? ' + external data' : '')],
    ['sha256', String(model.sha256)],
    ['uploaded', String(model.createdAt)],
  ];
  if (i.irVersion !== undefined) rows.push(['IR version', String(i.irVersion)]);
  if (Array.isArray(i.opsets)) {
    rows.push(['opsets', i.opsets.map((o: any) => (o.domain || 'ai.onnx') + ' ' + o.version).join(', ')]);
  }
  if (typeof i.parameters === 'number') rows.push(['parameters', fmtNum(i.parameters, 8)]);
  const io = (list: any[]) =>
    (list ?? []).map(
      (t: any) =>
        t.name +
        ' ' +
        (t.dtype ?? t.type ?? '') +
        ' [' +
        (t.shape ?? []).map((d: any) => (d === null ? '?' : String(d))).join(', ') +
        ']',
    );
  rows.push(['inputs', io(i.inputs).join('; ')]);
  rows.push(['outputs', io(i.outputs).join('; ')]);
  if (Array.isArray(i.weights)) {
    const compressible = i.weights.filter((w: any) => w.compressible).length;
    rows.push(['weights', i.weights.length + ' found, ' + compressible + ' compressible']);
  }
  const ops = i.opHistogram ?? i.ops;
  if (ops && typeof ops === 'object') {
    const top = Object.keys(ops)
      .sort((a, b) => ops[b] - ops[a])
      .map((k) => k + ' ×' + ops[k]);
    rows.push(['operators', top.join(', ')]);
  }
  const table = $('inspection');
  table.textContent = '';
  for (const [k, v] of rows) {
    const tr = el('tr');
    tr.appendChild(el('th', k));
    tr.appendChild(el('td', v));
    table.appendChild(tr);
  }
}

export function renderJobs(jobs: any[]): void {
  const table = $('jobs');
  fillTable(table, ['job', 'state', 'recipe', 'size after', 'quality', 'created'], []);
  for (const j of jobs) {
    const tr = el('tr', undefined, { 'data-job': j.id });
    const td = el('td');
    td.appendChild(el('a', j.id.slice(0, 8) + '…', { href: '/jobs/' + encodeURIComponent(j.id) }));
    tr.appendChild(td);
    tr.appendChild(el('td', j.state));
    tr.appendChild(el('td', recipeLabel(j.recipe)));
    const s = j.metrics && j.metrics.sizes;
    tr.appendChild(
      el(
        'td',
        s && s.inputBytes ? formatBytes(s.outputBytes) + ' (' + fmtPct(s.outputBytes / s.inputBytes) + ')' : '—',
      ),
    );
    const q = qualityMeasures(j.metrics);
    tr.appendChild(
      el('td', q.length ? q[0][0] + ' ' + fmtNum(q[0][2]) : j.state === 'succeeded' ? 'not evaluated' : '—'),
    );
    tr.appendChild(el('td', String(j.createdAt)));
    table.appendChild(tr);
  }
  $('no-jobs').hidden = jobs.length > 0;
}

export function renderModelPlots(jobs: any[]): void {
  $('size-plot').innerHTML = scatterSvg('Quality vs size', 'model size', modelSeries(jobs, 'size'), 'bytes');
  const latency = modelSeries(jobs, 'latency');
  $('latency-plot').innerHTML = latency.length
    ? scatterSvg('Quality vs latency (p50, smallest batch)', 'latency', latency, 'ms')
    : '';
  $('model-plots').setAttribute('data-ready', 'true');
}

export function modelPageMain(): void {
  const modelId = decodeURIComponent(String(location.pathname).split('/').filter(Boolean).pop() ?? '');
  const start = async (key: string) => {
    $('error').hidden = true;
    try {
      const model: any = await (await apiGet(key, '/v1/models/' + encodeURIComponent(modelId))).json();
      $('model').hidden = false;
      $('model-name').textContent = model.name;
      renderInspection(model);
      const jobs: any[] = [];
      let cursor: string | null = null;
      do {
        const q = '/v1/jobs?limit=200&modelId=' + encodeURIComponent(modelId) + (cursor ? '&cursor=' + cursor : '');
        const page: any = await (await apiGet(key, q)).json();
        jobs.push(...page.items);
        cursor = page.nextCursor;
      } while (cursor && jobs.length < 1000);
      renderJobs(jobs);
      renderModelPlots(jobs);
    } catch (e: any) {
      if (e && e.status === 401) {
        askForKey('The key was refused (401): it is unknown or revoked.', (k) => void start(k));
        return;
      }
      $('error').textContent = String(e && e.message ? e.message : e);
      $('error').hidden = false;
    }
  };
  $('model-id').textContent = modelId;
  const key = storedKey();
  if (key) void start(key);
  else askForKey('No API key in this tab yet.', (k) => void start(k));
}
