import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escapeXml, formatBytes, layerErrorSvg, qualitySeries, qualityVsSizeSvg } from '../../../apps/api/ui/plots.js';
import { jobPageScript } from '../../../apps/api/ui/routes.js';

const report = {
  sizes: { inputBytes: 4_000_000, outputBytes: 2_500_000 },
  quality: {
    evaluated: true,
    top1Agreement: 0.97,
    cosineSimilarity: 0.995,
    dense: { accuracy: 0.81 },
    compressed: { accuracy: 0.79 },
  },
  layers: [
    { name: 'fc1.weight', relError: 0.2 },
    { name: 'fc2.weight', relError: 0.05 },
    { name: 'head<script>', relError: 0.1 },
    { name: 'emb', skipped: 'not a MatMul weight', relError: null },
  ],
};

/** Attribute values of every element matching `tag[attr=...]` in order. */
function attrs(svg: string, tag: string, attr: string): string[] {
  return [...svg.matchAll(new RegExp(`<${tag}\\b[^>]*\\b${attr}="([^"]*)"`, 'g'))].map((m) => m[1]);
}

test('quality series: labels accuracy when present, agreement measures against the dense model itself', () => {
  assert.deepEqual(
    qualitySeries(report).map((s) => [s.label, s.points.map((p) => [p.name, p.bytes, p.value])]),
    [
      [
        'accuracy (labels)',
        [
          ['dense', 4_000_000, 0.81],
          ['compressed', 2_500_000, 0.79],
        ],
      ],
      [
        'top-1 agreement with dense',
        [
          ['dense', 4_000_000, 1],
          ['compressed', 2_500_000, 0.97],
        ],
      ],
      [
        'output cosine similarity',
        [
          ['dense', 4_000_000, 1],
          ['compressed', 2_500_000, 0.995],
        ],
      ],
    ],
  );
  assert.deepEqual(qualitySeries({ ...report, quality: { evaluated: false } }), []);
  assert.deepEqual(qualitySeries({ quality: report.quality }), [], 'no sizes, no plot');
});

test('quality vs size: every point is placed by its own value (higher value → higher on the plot)', () => {
  const svg = qualityVsSizeSvg(report);
  const values = attrs(svg, 'circle', 'data-value').map(Number);
  const cy = attrs(svg, 'circle', 'cy').map(Number);
  const cx = attrs(svg, 'circle', 'cx').map(Number);
  const bytes = attrs(svg, 'circle', 'data-bytes').map(Number);
  assert.equal(values.length, 6);
  assert.deepEqual(values, [0.81, 0.79, 1, 0.97, 1, 0.995]);
  // The y mapping is affine and decreasing: check it against two points, independently of the implementation.
  const slope = (cy[1] - cy[0]) / (values[1] - values[0]);
  assert.ok(slope < 0);
  for (let i = 0; i < values.length; i++) assert.ok(Math.abs(cy[0] + slope * (values[i] - values[0]) - cy[i]) < 1e-6);
  // x grows with size; the dense model is the right-hand point.
  for (let i = 0; i < 6; i += 2) assert.ok(cx[i] > cx[i + 1] && bytes[i] > bytes[i + 1]);
  assert.match(svg, /^<svg [^>]*data-plot="quality-vs-size"/);
  assert.match(qualityVsSizeSvg({}), /not evaluated/);
});

test('per-layer error: one bar per measured layer, widths proportional to the error, names escaped', () => {
  const svg = layerErrorSvg(report);
  assert.deepEqual(attrs(svg, 'rect', 'data-layer'), ['fc1.weight', 'fc2.weight', 'head&lt;script&gt;']);
  const widths = attrs(svg, 'rect', 'width').map(Number);
  const values = [0.2, 0.05, 0.1];
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(widths[i] / widths[0] - values[i] / values[0]) < 0.01, `bar ${i}`);
  assert.equal(svg.includes('<script>'), false);
  assert.match(layerErrorSvg({ layers: [] }), /no per-layer errors measured/);
});

test('helpers', () => {
  assert.equal(escapeXml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  assert.deepEqual(
    [formatBytes(512), formatBytes(2048), formatBytes(3 * 1024 ** 2), formatBytes(5 * 1024 ** 3)],
    ['512 B', '2.0 KiB', '3.00 MiB', '5.00 GiB'],
  );
});

test('the served page script is valid JavaScript containing every plot function', () => {
  const src = jobPageScript();
  assert.doesNotThrow(() => new Function(src.replace(/jobPageMain\(\);\s*$/, '')));
  for (const name of [
    'qualityVsSizeSvg',
    'layerErrorSvg',
    'qualitySeries',
    'escapeXml',
    'formatBytes',
    'jobPageMain',
  ]) {
    assert.match(src, new RegExp(`function ${name}\\(`));
  }
  // Run the plot functions from the served source and compare with the module's own output.
  const fromSource = new Function(
    `${src.replace(/jobPageMain\(\);\s*$/, '')}; return { qualityVsSizeSvg, layerErrorSvg };`,
  )();
  assert.equal(fromSource.qualityVsSizeSvg(report), qualityVsSizeSvg(report));
  assert.equal(fromSource.layerErrorSvg(report), layerErrorSvg(report));
});
