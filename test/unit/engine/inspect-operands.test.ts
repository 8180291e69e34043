// inspect lists as weights only what a method can compress or a weight it explains: a bias that reaches an attention
// MatMul through Add (PyTorch's `blocks.N.qkv.bias`) or a tensor reached through Slice is an operand computed at run
// time, listed apart with the reason instead of as a weight with "K 768 N 0".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel } from '../../../packages/engine/onnx/model.js';
import { inspectModel } from '../../../packages/engine/onnx/inspect.js';
import { formatReport } from '../../../apps/cli/actions/inspect.js';
import { PPOCR_DIR } from '../../helpers/onnx-fixtures.js';
import { randn } from '../sparsity/models.js';

test('a bias on the way to an attention MatMul is listed as a run-time operand, not as a weight', () => {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', [4, 768]);
  b.initializer('blocks.0.q.weight', 'float32', [768, 64], randn(768 * 64, 1, 0.05));
  b.initializer('blocks.0.k.weight', 'float32', [768, 64], randn(768 * 64, 2, 0.05));
  b.initializer('blocks.0.k.bias', 'float32', [64], randn(64, 3, 0.05));
  const q = b.node('MatMul', ['x', 'blocks.0.q.weight'], {}, { name: '/blocks.0/q/MatMul' });
  const k0 = b.node('MatMul', ['x', 'blocks.0.k.weight'], {}, { name: '/blocks.0/k/MatMul' });
  const k = b.node('Add', ['blocks.0.k.bias', k0], {}, { name: '/blocks.0/k/Add' });
  const kt = b.node('Transpose', [k], { perm: [1, 0] });
  b.node('MatMul', [q, kt], {}, { name: '/blocks.0/attn/MatMul', output: 'y' });
  b.output('y', 'float32', [4, 4]);
  const r = inspectModel(b.build());
  assert.deepEqual(r.weights.map((w) => w.name).sort(), ['blocks.0.k.weight', 'blocks.0.q.weight']);
  for (const w of r.weights) assert.ok(w.K > 0 && w.N > 0, `${w.name}: K ${w.K} N ${w.N}`);
  assert.equal(r.otherOperands.length, 1);
  assert.equal(r.otherOperands[0].name, 'blocks.0.k.bias');
  assert.match(r.otherOperands[0].reason, /computed at run time .*via Add/);
  assert.match(formatReport(r), /not weights 1 .*\n.*blocks\.0\.k\.bias.*computed at run time/);
});

test('PP-OCRv4 rec: the Slice-fed constant is a run-time operand; every listed MatMul weight is a matrix', async () => {
  const m = await loadModel(join(PPOCR_DIR, 'ch_PP-OCRv4_rec_infer.onnx'));
  try {
    const r = inspectModel(m);
    assert.deepEqual(
      r.otherOperands.map((o) => o.name),
      ['whswish_b_28.w_0'],
    );
    for (const w of r.weights) if (w.op !== 'Conv') assert.equal(w.shape.length, 2, w.name);
  } finally {
    closeModel(m);
  }
});
