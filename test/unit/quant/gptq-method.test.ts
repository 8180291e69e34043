// quant.scheme "gptq" through runRecipe: MatMulNBits on a small transformer, QDQ on a (grouped) Conv net, and inside
// slim under the 2:4 mask — each layer's error and the model's output error below RTN's with the same groups, the
// written models run in ONNX Runtime, and a run without calibration data is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../../packages/engine/onnx/model.js';
import { isInputError } from '../../../packages/engine/job.js';
import { parseRecipe } from '../../../packages/engine/recipe.js';
import { method as quantize } from '../../../packages/engine/methods/quantize.js';
import { method as slim } from '../../../packages/engine/methods/slim.js';
import { convNet, randn, tokenData, transformer } from '../sparsity/models.js';
import { run, tempDir, writeCase } from '../sparsity/helpers.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

type Row = { name: string; relError: number; skipped?: string; route?: string; pattern?: string };
const rows = (r: { report: { layers: unknown[] } }) => (r.report.layers as Row[]).filter((l) => !l.skipped);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

test('recipe: gptq declares calibration + Hessian, fills its defaults, and its knobs need the scheme', () => {
  const r = parseRecipe({ method: 'quantize', quant: { bits: 4, scheme: 'gptq' } });
  assert.ok(r.method === 'quantize');
  assert.deepEqual(
    { actOrder: r.quant.actOrder, blockSize: r.quant.blockSize, dampening: r.quant.dampening },
    { actOrder: false, blockSize: 128, dampening: 0.01 },
  );
  assert.equal(quantize.calibration(r), 'required');
  assert.equal(quantize.hessian(r), true);
  const rtn = parseRecipe({ method: 'quantize', quant: { bits: 4 } });
  assert.ok(rtn.method === 'quantize');
  assert.equal(quantize.calibration(rtn), 'optional');
  assert.equal(quantize.hessian(rtn), false);
  const s = parseRecipe({ method: 'slim', criterion: 'magnitude', quant: { bits: 4, scheme: 'gptq' } });
  assert.ok(s.method === 'slim');
  assert.equal(slim.calibration(s), 'required');
  assert.equal(slim.hessian(s), true);
  assert.throws(
    () => parseRecipe({ method: 'quantize', quant: { bits: 4, actOrder: true } }),
    /\/quant\/actOrder.*gptq/,
  );
});

test('quantize gptq (MatMulNBits): layer and model errors below RTN at g32 and g128, act order too', async () => {
  const model = await writeCase(dir, 'lm', transformer(), { ids: tokenData(64) });
  const evalSet = await writeCase(dir, 'lm-eval', transformer(), { ids: tokenData(32, undefined, 99) });
  const base = { method: 'quantize', accuracyLevel: 1, exclude: ['lm_head'] };
  const io = { calibrationPath: model.dataPath, evalPath: evalSet.dataPath };
  const lines: string[] = [];
  for (const groupSize of [32, 128]) {
    const go = async (quant: Record<string, unknown>, tag: string) => {
      const r = await run({ ...base, quant: { bits: 4, groupSize, ...quant } }, model.modelPath, join(dir, tag), io);
      const written = await loadModel(join(dir, tag, 'model.onnx'));
      assert.equal(written.proto.graph!.node.filter((n) => n.opType === 'MatMulNBits').length, 12);
      const fid = (r.report.quality as { relativeError: number }).relativeError;
      return { layers: rows(r), fid };
    };
    const rtn = await go({}, `rtn${groupSize}`);
    const g = await go({ scheme: 'gptq' }, `gptq${groupSize}`);
    const ga = await go({ scheme: 'gptq', actOrder: true }, `gptqa${groupSize}`);
    assert.match(g.layers[0].pattern!, /GPTQ/);
    lines.push(
      `g${groupSize}: mean layer error RTN ${mean(rtn.layers.map((l) => l.relError)).toFixed(4)} GPTQ ` +
        `${mean(g.layers.map((l) => l.relError)).toFixed(4)} GPTQ act-order ${mean(ga.layers.map((l) => l.relError)).toFixed(4)}; ` +
        `model ${rtn.fid.toFixed(4)} / ${g.fid.toFixed(4)} / ${ga.fid.toFixed(4)}`,
    );
    for (const x of [g, ga]) {
      assert.ok(mean(x.layers.map((l) => l.relError)) < mean(rtn.layers.map((l) => l.relError)), lines.at(-1));
      assert.ok(x.fid < rtn.fid, lines.at(-1));
    }
  }
  console.log(lines.join('\n'));
});

test('quantize gptq on Conv (QDQ, grouped Conv per group) beats RTN; without calibration it is refused', async () => {
  const data = { x: { dtype: 'float32' as const, dims: [6, 8, 12, 12], data: randn(6 * 8 * 144, 9) } };
  const c = await writeCase(dir, 'conv', convNet(), data);
  const quant = { bits: 4, groupSize: 'channel', symmetric: true };
  const r = await run({ method: 'quantize', quant, format: 'qdq' }, c.modelPath, join(dir, 'c-rtn'), {
    calibrationPath: c.dataPath,
  });
  const g = await run(
    { method: 'quantize', quant: { ...quant, scheme: 'gptq' }, format: 'qdq' },
    c.modelPath,
    join(dir, 'c-gptq'),
    { calibrationPath: c.dataPath },
  );
  assert.deepEqual(
    rows(g)
      .map((l) => l.name)
      .sort(),
    ['c1_w', 'c2_w'],
  );
  for (const l of rows(g)) {
    const ref = rows(r).find((x) => x.name === l.name)!;
    assert.ok(l.relError < ref.relError, `${l.name}: GPTQ ${l.relError} vs RTN ${ref.relError}`);
  }
  const fid = (x: typeof r) => (x.report.quality as { relativeError: number }).relativeError;
  assert.ok(fid(g) < fid(r), `model: GPTQ ${fid(g)} vs RTN ${fid(r)}`);
  await assert.rejects(
    run({ method: 'quantize', quant: { ...quant, scheme: 'gptq' }, format: 'qdq' }, c.modelPath, join(dir, 'c-none')),
    (e: unknown) => isInputError(e) && /calibration/.test((e as Error).message),
  );
});

test('slim with quant.scheme gptq: kept weights rounded with feedback under the 2:4 mask beat RTN', async () => {
  const model = await writeCase(dir, 'lm3', transformer(), { ids: tokenData(64) });
  const base = {
    method: 'slim',
    pattern: '2:4',
    criterion: 'wanda',
    accuracyLevel: 1,
    exclude: ['lm_head'],
    lowRank: { rankRatio: 0.001 }, // no adapter: the sparse part alone
  };
  const io = { calibrationPath: model.dataPath };
  const rtn = await run(
    { ...base, quant: { bits: 4, scheme: 'rtn', groupSize: 32 } },
    model.modelPath,
    join(dir, 's-rtn'),
    io,
  );
  const g = await run(
    { ...base, quant: { bits: 4, scheme: 'gptq', groupSize: 32 } },
    model.modelPath,
    join(dir, 's-g'),
    io,
  );
  const sg = await run(
    { ...base, criterion: 'sparsegpt', quant: { bits: 4, scheme: 'gptq', groupSize: 32 } },
    model.modelPath,
    join(dir, 's-sg'),
    io,
  );
  for (const x of [g, sg]) {
    for (const l of x.report.layers.filter((y) => !y.skipped)) assert.equal(l.patternVerified, true, l.name);
  }
  const e = (x: typeof rtn) => mean(rows(x).map((l) => l.relError));
  console.log(`slim 2:4 no adapter, mean layer error: wanda+RTN ${e(rtn)} wanda+GPTQ ${e(g)} sparsegpt+GPTQ ${e(sg)}`);
  assert.ok(e(g) < e(rtn));
  assert.ok(e(sg) < e(g));
});
