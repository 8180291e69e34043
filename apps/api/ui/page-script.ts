// The job page's browser code, as one function whose source routes.ts serves (no build step, no framework). It
// reads the API key (the page's own field, or what Swagger UI's "Authorize" persisted), shows the job, follows
// GET /v1/jobs/:id/events through fetch (EventSource cannot send an Authorization header), and draws the report's
// plots with the functions of plots.ts once the job has succeeded.
import { layerErrorSvg, qualityVsSizeSvg } from './plots.js';
import { searchFrontHtml } from './search-view.js';

declare const document: any;
declare const localStorage: any;
declare const sessionStorage: any;
declare const location: any;

export function jobPageMain(): void {
  const jobId = decodeURIComponent(String(location.pathname).split('/').filter(Boolean).pop() ?? '');
  const $ = (id: string) => document.getElementById(id);
  const TERMINAL = ['succeeded', 'failed', 'cancelled'];

  const storedKey = (): string => {
    const own = sessionStorage.getItem('onnx-compress-key');
    if (own) return own;
    try {
      // Swagger UI with persistAuthorization keeps {bearerAuth: {value}} under "authorized".
      const auth = JSON.parse(localStorage.getItem('authorized') ?? 'null');
      const v = auth && auth.bearerAuth && auth.bearerAuth.value;
      if (typeof v === 'string' && v) return v.replace(/^Bearer\s+/i, '');
    } catch {
      /* nothing stored */
    }
    return '';
  };
  let key = storedKey();

  const setText = (id: string, text: string) => {
    $(id).textContent = text;
  };
  const showError = (msg: string) => {
    setText('error', msg);
    $('error').hidden = !msg;
  };
  const api = async (path: string) => {
    const res = await fetch(path, { headers: { authorization: 'Bearer ' + key } });
    if (!res.ok) {
      let detail = res.status + ' ' + res.statusText;
      try {
        const p: any = await res.json();
        detail = p.title + (p.detail ? ': ' + p.detail : '');
      } catch {
        /* not problem+json */
      }
      throw new Error(detail);
    }
    return res;
  };

  const renderState = (state: string) => {
    setText('state', state);
    $('state').className = 'state state-' + state;
    $('state').setAttribute('data-state', state);
  };
  const renderProgress = (
    fraction: number,
    stage: string | null,
    layer?: { index: number; total: number; name: string },
  ) => {
    const pct = Math.round(Math.max(0, Math.min(1, Number(fraction) || 0)) * 100);
    $('bar').style.width = pct + '%';
    $('progress').setAttribute('data-percent', String(pct));
    setText('percent', pct + '%');
    setText('stage', stage ?? '');
    setText('layer', layer ? 'layer ' + (layer.index + 1) + '/' + layer.total + ' ' + layer.name : '');
  };
  const renderTrial = (detail: any) => {
    const t = detail && detail.trial;
    if (t && t.index > 0)
      setText(
        'layer',
        'trial ' +
          t.index +
          '/' +
          t.total +
          (detail.best ? ' · best so far ' + (detail.best.bytes / 1e6).toFixed(2) + ' MB' : ''),
      );
  };

  const renderJob = (job: any) => {
    renderState(job.state);
    renderProgress(job.progress, job.stage, job.progressDetail && job.progressDetail.layer);
    renderTrial(job.progressDetail);
    setText('created', job.createdAt ?? '');
    if (job.error) showError(job.error.code + ': ' + job.error.message);
    const list = $('artifacts');
    list.innerHTML = '';
    for (const a of job.artifacts ?? []) {
      const li = document.createElement('li');
      li.textContent = a.name + ' (' + a.sizeBytes + ' bytes, sha256 ' + String(a.sha256).slice(0, 12) + '…)';
      list.appendChild(li);
    }
  };

  const renderReport = async () => {
    const report: any = await (await api('/v1/jobs/' + encodeURIComponent(jobId) + '/artifacts/report.json')).json();
    $('quality-plot').innerHTML = qualityVsSizeSvg(report);
    $('layer-plot').innerHTML = layerErrorSvg(report);
    $('plots').hidden = false;
    $('plots').setAttribute('data-ready', 'true');
  };

  /** A search's plot (as an <img> from a data: URL: the page's CSP allows no other image source) and its front. */
  const renderSearch = async (job: any) => {
    const names = (job.artifacts ?? []).map((a: any) => a.name);
    if (!names.includes('pareto.svg') || !names.includes('report.json')) return;
    const base = '/v1/jobs/' + encodeURIComponent(jobId) + '/artifacts/';
    const svg = await (await api(base + 'pareto.svg')).text();
    $('pareto').src = 'data:image/svg+xml;base64,' + btoa(unescape(encodeURIComponent(svg)));
    $('search-table').innerHTML = searchFrontHtml(await (await api(base + 'report.json')).json());
    $('search').hidden = false;
    $('search').setAttribute('data-ready', 'true');
  };

  const finished = async () => {
    const job: any = await (await api('/v1/jobs/' + encodeURIComponent(jobId))).json();
    renderJob(job);
    // A failed search still has its report and plot (budget-unreachable).
    await renderSearch(job);
    if (job.state === 'succeeded') await renderReport();
  };

  /** Reads the SSE stream; returns when the server ends it (after the final state). */
  const follow = async () => {
    const res = await api('/v1/jobs/' + encodeURIComponent(jobId) + '/events');
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
        if (!data) continue;
        const d = JSON.parse(data);
        if (event === 'state') {
          renderState(d.state);
          renderProgress(d.progress, d.stage, d.detail && d.detail.layer);
        } else if (event === 'progress') {
          renderProgress(d.fraction, d.stage, d.layer);
        }
        const log = $('events');
        const li = document.createElement('li');
        li.textContent = event + ': ' + data;
        log.appendChild(li);
      }
    }
  };

  const start = async () => {
    showError('');
    if (!key) {
      $('key-form').hidden = false;
      return;
    }
    $('key-form').hidden = true;
    try {
      const job: any = await (await api('/v1/jobs/' + encodeURIComponent(jobId))).json();
      renderJob(job);
      if (!TERMINAL.includes(job.state)) await follow();
      await finished();
    } catch (e: any) {
      showError(String(e && e.message ? e.message : e));
    }
  };

  setText('job-id', jobId);
  $('key-form').addEventListener('submit', (ev: any) => {
    ev.preventDefault();
    key = String($('key-input').value).trim();
    sessionStorage.setItem('onnx-compress-key', key);
    void start();
  });
  void start();
}
