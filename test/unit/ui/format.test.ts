import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  eventText,
  latencyView,
  layerLabel,
  meanBitsPerWeight,
  recipeEntries,
  shownPercent,
  stageRows,
  summaryRows,
} from '../../../apps/api/ui/format.js';
import { modelSeries, recipeLabel, scatterSvg } from '../../../apps/api/ui/model-plots.js';
import { jobPageScript, modelPageScript } from '../../../apps/api/ui/routes.js';

const metrics = {
  sizes: { inputBytes: 4 * 1024 * 1024, outputBytes: 1024 * 1024, weightSparsity: 0.5, parameters: 1_000_000 },
  summary: { compressedLayers: 3, skippedLayers: 1 },
  quality: {
    evaluated: true,
    relativeError: 0.123456,
    cosineSimilarity: 0.99,
    top1Agreement: 0.9,
    dense: { accuracy: 0.8, perplexity: 12.5 },
    compressed: { accuracy: 0.75, perplexity: 14.25 },
    source: 'dataset val.npz (1234)',
    samples: 64,
  },
  seconds: 2.5,
};
const report = {
  layers: [
    { name: 'onnx::MatMul_435', node: '/fc1/MatMul', shape: [100, 10], bitsPerWeight: 4 },
    { name: 'w2', node: '', shape: [300, 10], bitsPerWeight: 8 },
    { name: 'w3', shape: [5, 5], skipped: 'too small', bitsPerWeight: 32 },
  ],
};

test('summary: size before → after with the ratio, sparsity, bits per weight, quality, in that order', () => {
  const rows = summaryRows(metrics, report);
  assert.deepEqual(
    rows.map((r) => r.key),
    ['size', 'sparsity', 'bits', 'layers', 'relError', 'cosine', 'top1', 'accuracy', 'perplexity', 'data', 'seconds'],
  );
  const v = Object.fromEntries(rows.map((r) => [r.key, r.value]));
  assert.equal(v.size, '4.00 MiB → 1.00 MiB (0.25× the dense size)');
  assert.equal(v.sparsity, '50.0% of 1000000 weights');
  assert.equal(v.bits, '7'); // (4·1000 + 8·3000) / 4000; the skipped layer does not count
  assert.equal(v.accuracy, '80.0% → 75.0%');
  assert.equal(v.perplexity, '12.5 → 14.25');
  assert.equal(v.relError, '0.1235');
  assert.equal(v.data, 'dataset val.npz (1234), 64 samples');
  assert.equal(meanBitsPerWeight([]), null);
});

test('summary: a job with no data still shows size and sparsity, and says why quality is missing', () => {
  const rows = summaryRows({ ...metrics, quality: { evaluated: false, reason: 'no evaluation or calibration data' } });
  const v = Object.fromEntries(rows.map((r) => [r.key, r.value]));
  assert.ok(v.size && v.sparsity);
  assert.equal(v.quality, 'not evaluated: no evaluation or calibration data');
});

test('latency: rows with p50/p95 and the slower-than-dense flag; unmeasured says why', () => {
  const view = latencyView({
    executionProvider: 'cpu',
    note: 'n',
    rows: [
      { batch: 1, dense: { p50: 2, p95: 3 }, compressed: { p50: 1, p95: 1.5 }, speedup: 2, slower: false },
      { batch: 8, dense: { p50: 2, p95: 3 }, compressed: { p50: 4, p95: 5 }, speedup: 0.5, slower: true },
    ],
  })!;
  assert.equal(view.measured, true);
  assert.deepEqual(view.rows[1], {
    batch: 8,
    dense: '2 / 3 ms',
    compressed: '4 / 5 ms',
    speedup: '0.5×',
    slower: true,
  });
  assert.deepEqual(latencyView({ measured: false, reason: 'no data' }), { measured: false, note: 'no data', rows: [] });
  assert.equal(latencyView(undefined), null);
});

test('stages, recipe entries, layer labels, event lines, percentages', () => {
  assert.deepEqual(
    stageRows([{ name: 'calibrate', seconds: 1.234, peakRssBytes: 2048, executionProvider: 'cpu', passes: 2 }]),
    [['calibrate', '1.23 s', '2.0 KiB', 'cpu', '2']],
  );
  assert.deepEqual(recipeEntries({ method: 'quantize', quant: { bits: 4, groupSize: 32 }, exclude: ['a', 'b'] }), [
    ['method', 'quantize'],
    ['quant.bits', '4'],
    ['quant.groupSize', '32'],
    ['exclude', 'a, b'],
  ]);
  assert.equal(layerLabel({ name: 'onnx::MatMul_435', node: '/fc1/MatMul' }), '/fc1/MatMul');
  assert.equal(layerLabel({ name: 'fc.weight', node: '' }), 'fc.weight');
  assert.equal(
    eventText('progress', {
      stage: 'compress',
      fraction: 0.456,
      layer: { index: 2, total: 12, name: 'w' },
      message: 'm',
    }),
    'compress 46% · layer 3/12 w · m',
  );
  assert.equal(
    eventText('state', { state: 'failed', error: { code: 'bad', message: 'no' }, progress: 0.1 }),
    'failed · bad: no',
  );
  assert.equal(shownPercent('running', 1), 99, 'never "running" at 100%');
  assert.equal(shownPercent('succeeded', 0.97), 100);
  assert.equal(shownPercent('failed', 0.4), 40);
});

test('model plots: one point per succeeded job per measure plus the dense model; latency only where measured', () => {
  const jobs = [
    { id: 'a', state: 'succeeded', recipe: { method: 'sparsity', pattern: '2:4', criterion: 'wanda' }, metrics },
    {
      id: 'b',
      state: 'succeeded',
      recipe: { method: 'quantize', quant: { bits: 4, groupSize: 32 } },
      metrics: {
        ...metrics,
        sizes: { inputBytes: 4 * 1024 * 1024, outputBytes: 600_000 },
        latency: { rows: [{ batch: 1, dense: { p50: 2 }, compressed: { p50: 1 } }] },
      },
    },
    { id: 'c', state: 'failed', recipe: { method: 'slim' }, metrics: null },
  ];
  const size = modelSeries(jobs, 'size');
  assert.deepEqual(
    size.map((s) => [s.label, s.points.map((p) => [p.id, p.x, p.y])]),
    [
      [
        'accuracy (labels)',
        [
          ['dense', 4194304, 0.8],
          ['a', 1048576, 0.75],
          ['b', 600000, 0.75],
        ],
      ],
      [
        'top-1 agreement with dense',
        [
          ['dense', 4194304, 1],
          ['a', 1048576, 0.9],
          ['b', 600000, 0.9],
        ],
      ],
      [
        'output cosine similarity',
        [
          ['dense', 4194304, 1],
          ['a', 1048576, 0.99],
          ['b', 600000, 0.99],
        ],
      ],
    ],
  );
  const lat = modelSeries(jobs, 'latency');
  assert.deepEqual(
    lat[0].points.map((p) => [p.id, p.x]),
    [
      ['dense', 2],
      ['b', 1],
    ],
  );
  assert.equal(recipeLabel(jobs[1].recipe), 'quantize int4 g32');
  const svg = scatterSvg('Quality vs size', 'model size', size, 'bytes');
  assert.equal([...svg.matchAll(/data-job="a"/g)].length, 3);
  assert.match(svg, /data-plot="quality-vs-size"/);
  assert.match(scatterSvg('t', 'x', [], 'ms'), /no evaluated job yet/);
});

test('the served page scripts are valid JavaScript and their functions match the modules', () => {
  for (const [src, main] of [
    [jobPageScript(), 'jobPageMain'],
    [modelPageScript(), 'modelPageMain'],
  ] as const) {
    const body = src.replace(new RegExp(`${main}\\(\\);\\s*$`), '');
    const fns = new Function(`${body}; return { summaryRows, latencyView, modelSeries, ${main} };`)();
    assert.deepEqual(fns.summaryRows(metrics, report), summaryRows(metrics, report));
    assert.equal(typeof fns[main], 'function');
  }
});
