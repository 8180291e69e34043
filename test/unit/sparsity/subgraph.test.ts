// Weights inside If branches: an activation computed inside the branch cannot be captured as a graph output, so
// calibrated criteria skip that layer with the reason (one reading an outer-scope value is calibrated normally);
// magnitude (no activations needed) prunes both in place inside the subgraphs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { loadModel } from '../../../packages/engine/onnx/model.js';
import { tensorToFloat32 } from '../../../packages/engine/onnx/tensor.js';
import { randn } from './models.js';
import { nmViolations, run, tempDir, writeCase } from './helpers.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A branch whose MatMul reads either the outer value h directly, or Relu(h) computed inside the branch. */
function branch(name: string, seed: number, inner: boolean) {
  const g = new GraphBuilder({ name });
  g.initializer(`${name}_w`, 'float32', [16, 64], randn(16 * 64, seed, 0.3));
  const a = inner ? g.node('Relu', ['h'], {}, { output: `${name}_relu` }) : 'h';
  g.node('MatMul', [a, `${name}_w`], {}, { output: `${name}_out` });
  g.output(`${name}_out`, 'float32', ['n', 64]);
  return g.buildGraph();
}

function modelWithIf() {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['n', 16]);
  b.initializer('low', 'float32', [], [-1e9]);
  b.initializer('w0', 'float32', [16, 16], randn(256 * 4, 1, 0.3).subarray(0, 256));
  b.initializer('w_main', 'float32', [64, 32], randn(64 * 32, 2, 0.3));
  b.node('MatMul', ['x', 'w0'], {}, { output: 'h' });
  const flag = b.node('Greater', [b.node('ReduceSum', ['x'], { keepdims: 0 }), 'low']);
  const y = b.node('If', [flag], { then_branch: branch('then', 3, true), else_branch: branch('else', 4, false) });
  b.node('MatMul', [y, 'w_main'], {}, { output: 'out' });
  b.output('out', 'float32', ['n', 32]);
  return b.build();
}

test('subgraph weights: skipped with the reason for wanda when the activation is inner, pruned for magnitude', async () => {
  const c = await writeCase(dir, 'if', modelWithIf(), { x: { dtype: 'float32', dims: [6, 16], data: randn(96, 7) } });
  const wanda = await run(
    { method: 'sparsity', pattern: '2:4', criterion: 'wanda' },
    c.modelPath,
    join(dir, 'if-wanda'),
    {
      calibrationPath: c.dataPath,
    },
  );
  const wr = Object.fromEntries(wanda.report.layers.map((l) => [l.name, l.skipped ?? 'compressed']));
  assert.match(wr.then_w, /input activation lives in subgraph .* cannot be captured/);
  // The else branch reads the main-graph value h itself: that activation can be captured, so it is compressed.
  assert.equal(wr.else_w, 'compressed');
  assert.equal(wr.w_main, 'compressed');
  assert.match(wr.w0, /too small/);
  const mag = await run({ method: 'sparsity', pattern: '2:4' }, c.modelPath, join(dir, 'if-mag'));
  const rows = Object.fromEntries(mag.report.layers.map((l) => [l.name, l.skipped ?? 'compressed']));
  assert.equal(rows.then_w, 'compressed');
  assert.equal(rows.else_w, 'compressed');
  const out = await loadModel(join(dir, 'if-mag', 'model.onnx'));
  const ifNode = out.proto.graph!.node.find((n) => n.opType === 'If')!;
  for (const a of ifNode.attribute) {
    const t = a.g!.initializer[0];
    assert.equal(nmViolations(tensorToFloat32(out, t), [16, 64], 'KN', 2, 4), 0, a.name);
  }
});
