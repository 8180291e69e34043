import { test } from 'node:test';
import assert from 'node:assert/strict';
import { searchFrontHtml } from '../../../apps/api/ui/search-view.js';
import { jobPageScript } from '../../../apps/api/ui/routes.js';

const point = (trial: number, bytes: number, within: boolean, plan: object) => ({
  trial,
  kind: 'uniform',
  plan,
  bytes,
  bitsPerWeight: 4.5,
  latency: null,
  metric: 10.1,
  delta: 0.01,
  withinBudget: within,
});

test('search view: the front as a table, chosen row marked, every value escaped; nothing without a search', () => {
  const html = searchFrontHtml({
    search: {
      metric: 'perplexity',
      data: 'evaluation',
      trials: { used: 5, max: 24 },
      front: [point(2, 1e6, true, { uniform: 'int4 <g32>' }), point(4, 2e6, true, { counts: { 'int8 g32': 3 } })],
      chosen: point(2, 1e6, true, {}),
    },
  });
  assert.equal((html.match(/<tr data-chosen="true"/g) ?? []).length, 1);
  assert.equal((html.match(/<tbody>.*?<\/tbody>/)![0].match(/<tr/g) ?? []).length, 2);
  assert.ok(html.includes('int4 &lt;g32&gt;'));
  assert.ok(html.includes('3× int8 g32'));
  assert.match(html, /chosen: trial 2 \(1\.00 MB, perplexity 10\.1000\) · 5 of 24 trials on evaluation data/);
  assert.match(
    searchFrontHtml({ search: { front: [], chosen: null, metric: 'fidelity' } }),
    /no candidate met the budget/,
  );
  assert.equal(searchFrontHtml({ quality: {} }), '');
  assert.ok(jobPageScript().includes('function searchFrontHtml'));
});
