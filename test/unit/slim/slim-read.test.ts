// SLiM's read of each weight (methods/slim.ts readCanonical): float32, float16 and bfloat16 MatMul/Gemm weights stored
// as they are consumed are read chunk by chunk into the run's workspace and transposed there, NaN/±Inf counted on the
// way. The canonical [N][K] must be readWeightMatrix's, bit for bit, with the count of an independent scan; in memory
// and from external data, over several read chunks (4 MB of fp32 each) with a short last one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import { float32ToBfloat16, float32ToFloat16 } from '../../../packages/engine/onnx/floats.js';
import { discoverWeights, readWeightMatrix } from '../../../packages/engine/onnx/weights.js';
import type { DType } from '../../../packages/engine/onnx/tensor.js';
import { readCanonical, Workspace } from '../../../packages/engine/methods/slim.js';
import { randn } from '../sparsity/models.js';
import { removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

// Up: stored [K][N] = 1024×1040 (1008 rows per 4 MB chunk: two chunks, the last 16 rows); Gemm transB: [N][K] =
// 1040×1024 read as it is, in the same chunks of elements.
const K = 1024;
const N = 1040;
const NON_FINITE = [5, 1008 * N - 1, 1008 * N + 3, K * N - 1]; // in both chunks and at their edges

function storedBits(dtype: DType, v: Float32Array): Float32Array | Uint16Array {
  if (dtype === 'float16') return float32ToFloat16(v);
  return dtype === 'bfloat16' ? float32ToBfloat16(v) : v;
}

/** x → /model/layers.0/mlp/up_proj/MatMul (B stored [K][N]) → down_proj Gemm transB (B stored [K][N] as [N][K]). */
function llmBlock(dtype: DType): LoadedModel {
  const b = new GraphBuilder();
  const up = randn(K * N, 41, 0.02);
  const down = randn(N * K, 42, 0.02);
  [NaN, Infinity, -Infinity, NaN].forEach((v, i) => (up[NON_FINITE[i]] = v));
  down[NON_FINITE[1]] = NaN;
  b.input('input', dtype, ['batch', K]);
  b.initializer('onnx::MatMul_201', dtype, [K, N], storedBits(dtype, up));
  b.initializer('model.layers.0.mlp.down_proj.weight', dtype, [K, N], storedBits(dtype, down));
  const h = b.node('MatMul', ['input', 'onnx::MatMul_201'], {}, { name: '/model/layers.0/mlp/up_proj/MatMul' });
  b.node(
    'Gemm',
    [h, 'model.layers.0.mlp.down_proj.weight'],
    { transB: 1 },
    { name: '/model/layers.0/mlp/down_proj/Gemm', output: 'y' },
  );
  b.output('y', dtype, ['batch', K]);
  return b.build();
}

function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function checkReads(model: LoadedModel, dtype: DType, where: string): void {
  const ws = new Workspace();
  const weights = discoverWeights(model);
  assert.deepEqual(
    weights.map((w) => [w.op, w.dtype, w.N, w.K]),
    [
      ['MatMul', dtype, N, K],
      ['Gemm', dtype, K, N],
    ],
  );
  for (const w of weights) {
    const expected = readWeightMatrix(model, w);
    let nonFinite = 0;
    for (const v of expected) nonFinite += +!Number.isFinite(v);
    const got = readCanonical(model, w, ws);
    const what = `${dtype} ${w.op} (${where})`;
    assert.deepEqual(bitsOf(got.weights), bitsOf(expected), what);
    assert.equal(got.nonFinite, nonFinite, what);
    assert.equal(nonFinite, w.op === 'MatMul' ? 4 : 1, what);
    // The workspace's buffer, no fresh N×K array (the route taken, not only the values).
    assert.equal(got.weights.buffer, ws.f32('weights', w.N * w.K).buffer, `${what}: read into the workspace`);
  }
}

for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
  test(`slim reads ${dtype} MatMul and Gemm transB weights chunk by chunk, as readWeightMatrix does`, async () => {
    const model = llmBlock(dtype);
    checkReads(model, dtype, 'in memory');
    const dir = tempDir();
    try {
      const path = join(dir, 'block.onnx');
      await saveModel(model, path, { externalData: { sizeThreshold: 1024 } });
      const external = await loadModel(path);
      assert.deepEqual(
        discoverWeights(external).map((w) => w.location),
        ['external', 'external'],
      );
      checkReads(external, dtype, 'external data');
      closeModel(external);
    } finally {
      removeDir(dir);
    }
  });
}
