// The `slim` method through runRecipe on a small LLM-like transformer: the written model runs in ONNX Runtime, every
// sparse part holds 2:4 in its codes, and the model-level ordering ALGORITHMS.md reports holds — adapters beat the
// same sparsity + quantization without them, whitened ≥ slim saliency, refits help. Prints the table for the notes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../../packages/engine/onnx/model.js';
import { convNet, randn, tokenData, transformer } from '../sparsity/models.js';
import { run, storedTensor, tempDir, writeCase } from '../sparsity/helpers.js';
import { InputError } from '../../../packages/engine/job.js';
import { tensorToFloat32 } from '../../../packages/engine/onnx/tensor.js';
import { method as slimMethod } from '../../../packages/engine/methods/slim.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

interface SlimSummary {
  bitsPerWeight: number;
  meanRelError: number;
  meanRelErrorBeforeAdapter: number;
}

test('SLiM on a transformer: model fidelity and layer errors, adapters vs none, saliencies, refits', async () => {
  const model = await writeCase(dir, 'lm', transformer(), { ids: tokenData(64) });
  const evalSet = await writeCase(dir, 'lm-eval', transformer(), { ids: tokenData(32, undefined, 99) });
  const base = {
    method: 'slim',
    pattern: '2:4',
    criterion: 'wanda',
    quant: { bits: 4, scheme: 'rtn', groupSize: 32 },
    accuracyLevel: 1,
    exclude: ['lm_head'],
  };
  const configs: [string, Record<string, unknown>][] = [
    ['wanda 2:4 + RTN4 g32, no adapter', { lowRank: { rankRatio: 0.001 } }],
    ['SLiM paper (SLiM-Quant, slim saliency r=0.1)', { quant: { bits: 4, scheme: 'slim' } }],
    ['wanda 2:4 + RTN4 g32 + slim saliency', { lowRank: { saliency: 'slim' } }],
    ['  + 4-bit adapters (LoRA^Q)', { lowRank: { saliency: 'slim', quantize: true } }],
    ['wanda 2:4 + RTN4 g32 + whitened', { lowRank: { saliency: 'whitened' } }],
    ['  + 2 refits', { lowRank: { saliency: 'whitened' }, refitIterations: 2 }],
    ['sparsegpt 2:4 + RTN4 g32 + whitened', { criterion: 'sparsegpt', lowRank: { saliency: 'whitened' } }],
  ];
  const results: Record<string, { fidelity: number; slim: SlimSummary }> = {};
  for (const [label, extra] of configs) {
    const out = join(dir, label.replace(/\W+/g, '_'));
    const r = await run({ ...base, ...extra }, model.modelPath, out, {
      calibrationPath: model.dataPath,
      evalPath: evalSet.dataPath,
    });
    const q = r.report.quality as { relativeError: number };
    results[label] = { fidelity: q.relativeError, slim: r.report.slim as SlimSummary };
    for (const l of r.report.layers.filter((x) => !x.skipped)) assert.equal(l.patternVerified, true, l.name);
    const written = await loadModel(join(out, 'model.onnx'));
    const ops = written.proto.graph!.node.map((n) => n.opType);
    assert.equal(ops.filter((o) => o === 'MatMulNBits').length, label.includes('4-bit adapters') ? 36 : 12);
  }
  console.log(
    'transformer d=64 ff=256 2 layers, 12 linear layers (lm_head dense), eval relative output error:\n' +
      Object.entries(results)
        .map(
          ([l, v]) =>
            `  ${l.padEnd(48)} model ${v.fidelity.toFixed(4)}  mean layer ${v.slim.meanRelError.toFixed(4)} ` +
            `(before adapter ${v.slim.meanRelErrorBeforeAdapter.toFixed(4)})  ${v.slim.bitsPerWeight.toFixed(2)} bits/weight`,
        )
        .join('\n'),
  );
  const none = results['wanda 2:4 + RTN4 g32, no adapter'];
  const slim = results['wanda 2:4 + RTN4 g32 + slim saliency'];
  const white = results['wanda 2:4 + RTN4 g32 + whitened'];
  const refit = results['  + 2 refits'];
  assert.ok(slim.fidelity < 0.9 * none.fidelity, 'adapters beat no adapters on the model');
  assert.ok(slim.slim.meanRelError < 0.9 * none.slim.meanRelError, 'and on the layers');
  assert.ok(white.slim.meanRelError <= slim.slim.meanRelError, 'whitened ≥ slim saliency (layer error)');
  assert.ok(refit.slim.meanRelError <= white.slim.meanRelError, 'refits do not hurt');
  assert.ok(results['SLiM paper (SLiM-Quant, slim saliency r=0.1)'].fidelity < none.fidelity * 1.2);
});

test('slim without calibration data is refused with a clear error when the recipe needs it', async () => {
  const model = await writeCase(dir, 'lm2', transformer(), { ids: tokenData(4) });
  await assert.rejects(
    run({ method: 'slim' }, model.modelPath, join(dir, 'nocal')),
    (e: unknown) => e instanceof InputError || /calibration/.test(String(e)),
  );
});

test('SLiM on Conv: QDQ weights + Conv(k×k, r) → Conv(1×1) adapter, written model runs; grouped Conv skipped', async () => {
  const data = { x: { dtype: 'float32' as const, dims: [12, 8, 12, 12], data: randn(12 * 8 * 144, 9) } };
  const model = await writeCase(dir, 'conv', convNet(), data);
  const out = join(dir, 'conv-slim');
  const r = await run(
    {
      method: 'slim',
      pattern: '2:4',
      criterion: 'wanda',
      quant: { bits: 4, scheme: 'rtn', groupSize: 'channel' },
      lowRank: { rankRatio: 0.25, saliency: 'slim' },
      format: 'qdq',
    },
    model.modelPath,
    out,
    { calibrationPath: model.dataPath },
  );
  const byNode = Object.fromEntries(r.report.layers.map((l) => [l.node, l]));
  const conv1 = byNode.conv1 as Record<string, unknown>;
  assert.equal(conv1.skipped, undefined, String(conv1.skipped));
  assert.equal(conv1.rank, 4); // ⌊0.25·min(16, 72)⌋
  assert.equal(conv1.patternVerified, true);
  assert.match(String(conv1.route), /DequantizeLinear.*\+Conv \+ adapter/);
  // The adapter wins back part of the 2:4 + 4-bit error on the layer's own calibration outputs.
  assert.ok((conv1.relError as number) < (conv1.relErrorBeforeAdapter as number), JSON.stringify(conv1));
  assert.match(String(byNode.conv2.skipped), /grouped/);
  assert.ok(byNode.conv3.skipped); // depthwise and too small
  const written = await loadModel(join(out, 'model.onnx'));
  const ops = written.proto.graph!.node.map((n) => n.opType);
  assert.equal(ops.filter((o) => o === 'Conv').length, 5); // 3 layers + the adapter's two
  const q = r.report.quality as { evaluated: boolean; relativeError: number };
  assert.ok(q.evaluated && q.relativeError < 0.5, JSON.stringify(q));
});

test('NaN/Inf weights: slim counts them as it reads each weight and names them when they stop the layer', async () => {
  // reportsNonFinite: the runner skips its own pre-scan of every weight (report/sizes.ts nonFiniteCount); slim counts
  // them in its read of the weight. Its quantizers and adapter fit cannot take them, so the job fails naming the layer
  // and the count (it used to fail with the quantizer's "non-finite weight in row 13, group 0").
  assert.equal(slimMethod.reportsNonFinite, true);
  const model = transformer();
  const t = storedTensor(model, 'l0.attn.q')!;
  const v = tensorToFloat32(model, t);
  v[5] = NaN;
  v[77] = Infinity;
  v[300] = -Infinity;
  t.rawData = new Uint8Array(v.buffer.slice(0));
  const c = await writeCase(dir, 'lm-nan', model, { ids: tokenData(16) });
  await assert.rejects(
    run(
      { method: 'slim', pattern: '2:4', quant: { bits: 4, scheme: 'rtn', groupSize: 32 }, exclude: ['lm_head'] },
      c.modelPath,
      join(dir, 'nan-out'),
      { calibrationPath: c.dataPath },
    ),
    (e: unknown) =>
      e instanceof InputError &&
      e.code === 'non-finite-weights' &&
      /^l0\.attn\.q: 3 of 4096 weights are NaN or infinite/.test(e.message),
  );
});
