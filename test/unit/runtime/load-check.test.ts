// The ORT load check on a weight-free skeleton: valid models pass (large weights stubbed by ConstantOfShape with the
// same dtype and dims), graphs ORT refuses fail with an onnxruntime-error naming the problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { checkLoadable } from '../../../packages/engine/runtime/load-check.js';
import { randn } from '../sparsity/models.js';

function model(opts: { badOp?: boolean; wrongDims?: boolean } = {}) {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['n', 256]);
  b.initializer('w1', 'float32', [256, 256], randn(256 * 256, 1)); // 256 KiB: stubbed
  b.initializer('w2', 'float32', opts.wrongDims ? [128, 8] : [256, 8], randn(opts.wrongDims ? 1024 : 2048, 2));
  const h = b.node(opts.badOp ? 'NoSuchOp' : 'Relu', [b.node('MatMul', ['x', 'w1'])]);
  b.node('MatMul', [h, 'w2'], {}, { output: 'y' });
  b.output('y', 'float32', ['n', 8]);
  return b.build();
}

test('a valid model passes; the caller model is untouched', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'loadcheck-'));
  try {
    const m = model();
    const r = await checkLoadable(m, dir, ['cpu']);
    assert.equal(r.executionProvider, 'cpu');
    assert.deepEqual(
      m.proto.graph!.initializer.map((t) => t.name),
      ['w1', 'w2'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unknown operators and shape errors are refused by ONNX Runtime', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'loadcheck-'));
  try {
    for (const bad of [{ badOp: true }, { wrongDims: true }]) {
      await assert.rejects(checkLoadable(model(bad), dir, ['cpu']), (e: unknown) => {
        const err = e as { name: string; code: string; message: string };
        return err.name === 'InputError' && err.code === 'onnxruntime-error';
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
