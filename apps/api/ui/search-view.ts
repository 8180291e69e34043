// The job page's view of a search (method "search"): the chosen point and the Pareto front from report.json's
// `search`, as an HTML table (every value escaped). Runs in the browser (its source is served by routes.ts), so it
// uses only escapeXml from plots.ts and plain string building.
import { escapeXml } from './plots.js';

interface FrontPoint {
  trial: number;
  kind: string;
  plan: { uniform?: string; counts?: Record<string, number> };
  bytes: number;
  bitsPerWeight: number;
  latency: { batch1: number | null; batch8: number | null } | null;
  metric: number;
  delta: number;
  withinBudget: boolean;
}

/** Table of the front (chosen row marked) and a one-line summary; '' when the report has no search. */
export function searchFrontHtml(report: any): string {
  const s = report && report.search;
  if (!s || !Array.isArray(s.front)) return '';
  const chosen: FrontPoint | null = s.chosen ?? null;
  const planText = (p: FrontPoint) =>
    p.plan && p.plan.uniform
      ? String(p.plan.uniform)
      : Object.entries((p.plan && p.plan.counts) || {})
          .map(([k, v]) => v + '× ' + k)
          .join(', ');
  const num = (v: unknown, digits: number) => (typeof v === 'number' && isFinite(v) ? v.toFixed(digits) : '—');
  const rows = (s.front as FrontPoint[]).map((p) => {
    const mark = chosen && chosen.trial === p.trial ? ' data-chosen="true" style="font-weight:bold"' : '';
    const cells = [
      String(p.trial),
      p.kind,
      planText(p),
      (p.bytes / 1e6).toFixed(2) + ' MB',
      num(p.bitsPerWeight, 2),
      p.latency ? num(p.latency.batch1, 2) + ' ms' : '—',
      num(p.metric, 4),
      num(p.delta, 4),
      p.withinBudget ? 'yes' : 'no',
    ];
    return '<tr' + mark + '>' + cells.map((c) => '<td>' + escapeXml(c) + '</td>').join('') + '</tr>';
  });
  const head = ['trial', 'kind', 'plan', 'size', 'bits/weight', 'latency b1', String(s.metric), 'change', 'within']
    .map((h) => '<th>' + escapeXml(h) + '</th>')
    .join('');
  const summary = chosen
    ? 'chosen: trial ' +
      chosen.trial +
      ' (' +
      (chosen.bytes / 1e6).toFixed(2) +
      ' MB, ' +
      String(s.metric) +
      ' ' +
      num(chosen.metric, 4) +
      ')'
    : 'no candidate met the budget';
  const used = s.trials ? ' · ' + s.trials.used + ' of ' + s.trials.max + ' trials on ' + String(s.data) + ' data' : '';
  return (
    '<p id="search-summary">' +
    escapeXml(summary + used) +
    '</p>' +
    '<table id="search-front"><thead><tr>' +
    head +
    '</tr></thead><tbody>' +
    rows.join('') +
    '</tbody></table>'
  );
}
