// After quantize, sizes.nonZeros / weightSparsity count the weights whose dequantized value is exactly 0 — on the
// fused MatMulNBits path and the canonical (QDQ) one — instead of finding the replaced tensors gone and counting
// every weight non-zero (a 2:4 model quantized to 4 bits used to report sparsity 0).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel } from '../../../packages/engine/onnx/model.js';
import { tensorBytes, tensorToFloat32 } from '../../../packages/engine/onnx/tensor.js';
import { dequantizeMatMulNBits } from '../../../packages/engine/quant/matmulnbits.js';
import { randn } from '../sparsity/models.js';
import { run, tempDir, writeCase } from '../sparsity/helpers.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('sizes count dequantized zeros after 4-bit quantize (fused MatMulNBits and QDQ routes)', async () => {
  const b = new GraphBuilder({ opset: 21 });
  b.input('x', 'float32', ['batch', 64]);
  for (const [i, name] of ['w1', 'w2'].entries()) {
    const w = randn(64 * 64, i + 1, 0.2);
    for (let k = 0; k < 64; k++) for (let n = 0; n < 64; n++) if (k % 4 < 2) w[k * 64 + n] = 0; // 2:4 along K
    b.initializer(name, 'float32', [64, 64], w);
  }
  const h = b.node('MatMul', ['x', 'w1'], {}, { name: 'fc1' });
  b.node('MatMul', [h, 'w2'], {}, { name: 'fc2', output: 'y' });
  b.output('y', 'float32', ['batch', 64]);
  const c = await writeCase(dir, 'pruned', b.build(), { x: { dtype: 'float32', dims: [2, 64], data: randn(128, 3) } });
  // Fused path (fp32 initializer, g32 symmetric MatMulNBits): count independently from the written file.
  const out = join(dir, 'nbits');
  const r = await run({ method: 'quantize', quant: { bits: 4 }, accuracyLevel: 0 }, c.modelPath, out);
  const m = await loadModel(join(out, 'model.onnx'));
  let zeros = 0;
  const inits = new Map(m.proto.graph!.initializer.map((t) => [t.name, t]));
  for (const n of m.proto.graph!.node.filter((x) => x.opType === 'MatMulNBits')) {
    const d = dequantizeMatMulNBits({
      K: 64,
      N: 64,
      bits: 4,
      blockSize: 32,
      blocks: 2,
      B: tensorBytes(m, inits.get(n.input[1])!).slice(),
      scales: tensorToFloat32(m, inits.get(n.input[2])!),
      zeroPoints: null,
    });
    for (const v of d) if (v === 0) zeros++;
  }
  closeModel(m);
  const sizes = r.report.sizes as unknown as { parameters: number; nonZeros: number; weightSparsity: number };
  assert.equal(sizes.parameters, 2 * 64 * 64);
  assert.ok(zeros >= 64 * 64, `${zeros} zeros`); // at least the pruned half of both layers
  assert.equal(sizes.nonZeros, sizes.parameters - zeros);
  assert.ok(sizes.weightSparsity >= 0.5);
  // Canonical route (QDQ): the same codes, the same count.
  const q = await run({ method: 'quantize', quant: { bits: 4 }, format: 'qdq' }, c.modelPath, join(dir, 'qdq'));
  assert.equal((q.report.sizes as unknown as { nonZeros: number }).nonZeros, sizes.nonZeros);
});
