// The bench's LLM generator (bench/lib/llm-model.ts): weights streamed to external data behind a graph built with
// the engine's GraphBuilder; the files load, every q/k/v/o/gate/up/down/lm_head MatMul is a compressible weight, and
// ONNX Runtime runs the model in fp32 and fp16 (logits in the model's dtype).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { closeModel, loadModel } from '../../../packages/engine/onnx/model.js';
import { discoverWeights } from '../../../packages/engine/onnx/weights.js';
import { decodeNpz } from '../../../packages/engine/data/npz.js';
import { readFile } from 'node:fs/promises';
import {
  llmMatMulParams,
  llmParams,
  llmPreset,
  writeLlmCalibration,
  writeLlmModel,
  type LlmShape,
} from '../../../bench/lib/llm-model.js';

const SHAPE: LlmShape = { layers: 2, hidden: 128, mlp: 256, vocab: 512 };

test('llm generator: the issue 1B preset has 953 M parameters; unknown sizes are refused with the list', () => {
  assert.equal(Math.round(llmParams(llmPreset('1b')) / 1e6), 953);
  assert.ok(Math.abs(llmParams(llmPreset('250M')) / 1e6 - 250) < 10);
  assert.throws(() => llmPreset('13B'), /use one of .*250M/);
});

for (const dtype of ['float32', 'float16'] as const) {
  test(`llm generator (${dtype}): external data, all 7·layers+1 MatMul weights compressible, ORT runs it`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'llm-gen-'));
    try {
      const f = await writeLlmModel(dir, SHAPE, { dtype });
      const bytesPer = dtype === 'float32' ? 4 : 2;
      assert.ok(f.dataBytes >= (llmMatMulParams(SHAPE) + SHAPE.vocab * SHAPE.hidden) * bytesPer);
      assert.equal((await stat(f.dataPath)).size, f.dataBytes);
      assert.ok(f.modelBytes < 64 * 1024, `skeleton only: ${f.modelBytes} bytes`);
      const model = await loadModel(f.modelPath);
      const ws = discoverWeights(model).filter((w) => w.compressible);
      assert.deepEqual(
        ws.map((w) => w.name),
        f.matmulWeights,
      );
      assert.equal(
        ws.reduce((s, w) => s + w.N * w.K, 0),
        llmMatMulParams(SHAPE),
      );
      closeModel(model);
      await writeLlmCalibration(join(dir, 'calib.npz'), SHAPE, { samples: 2, seq: 8 });
      const ids = decodeNpz(await readFile(join(dir, 'calib.npz'))).get('input_ids')!;
      assert.deepEqual(ids.dims, [2, 8]);
      const s = await ort.InferenceSession.create(f.modelPath);
      const out = await s.run({ input_ids: new ort.Tensor('int64', ids.data as BigInt64Array, [2, 8]) });
      assert.equal(out.logits.type, dtype);
      assert.deepEqual(out.logits.dims, [2, 8, SHAPE.vocab]);
      await s.release();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
