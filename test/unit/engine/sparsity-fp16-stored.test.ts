// fp16/bf16 weights take the stored-layout sparsity paths (magnitude without calibration, in memory and through the
// spill file; Wanda and magnitude with calibration; SparseGPT): decoded to fp32 in reused buffers, pruned by the fp32
// kernels, encoded back to their own dtype. They must write exactly the bytes the canonical path writes (decode,
// transpose to [N][K], masks, transpose back, encode) and report the same rows. The canonical reference is the
// engine's own: readWeightMatrix → nmMask → writeWeightMatrix for the direct calls, and for whole jobs the same
// weights stored transposed behind a Transpose node, which no stored layout covers, so the job prunes them on the
// canonical path; transposed back, its bytes must equal the stored path's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import { lazyRawOf } from '../../../packages/engine/onnx/lazy.js';
import { tensorBytes } from '../../../packages/engine/onnx/tensor.js';
import { discoverWeights, readWeightMatrix, writeWeightMatrix } from '../../../packages/engine/onnx/weights.js';
import { floatToBfloatBits, floatToHalfBits } from '../../../packages/engine/onnx/floats.js';
import { applyMask, nmMask } from '../../../packages/engine/math/nm.js';
import { magnitudeScores } from '../../../packages/engine/math/wanda.js';
import {
  pruneStoredMagnitudeNM,
  storedFloatTensor,
  storedLayout,
} from '../../../packages/engine/math/sparsity-stored.js';
import { runRecipe } from '../../../packages/engine/run.js';
import type { Recipe } from '../../../packages/engine/recipe.js';
import type { LayerReport } from '../../../packages/engine/job-parts.js';
import { randomFloats, removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

type Half = 'float16' | 'bfloat16';

/** Bit patterns of the special values, per dtype. */
const BITS: Record<Half, { nan: number; nanPayload: number; inf: number; negInf: number; tiny: number }> = {
  float16: { nan: 0x7e00, nanPayload: 0xfe01, inf: 0x7c00, negInf: 0xfc00, tiny: 0x0001 },
  bfloat16: { nan: 0x7fc0, nanPayload: 0xffc1, inf: 0x7f80, negInf: 0xff80, tiny: 0x0001 },
};

/**
 * Weight bits [rows][cols] in `dtype`: random, with ties, −0, the smallest subnormal and (when asked) NaN (one with a
 * payload and sign) and ±Inf, placed in N:M groups along `stride` (cols for a MatMul [K][N] weight, 1 for Gemm).
 */
function weightBits(dtype: Half, rows: number, cols: number, seed: number, stride: number, nonFinite: boolean) {
  const conv = dtype === 'float16' ? floatToHalfBits : floatToBfloatBits;
  const bits = Uint16Array.from(randomFloats(rows * cols, seed), (v) => conv(v * 0.5));
  const b = BITS[dtype];
  // Group i of the column (MatMul [K][N]) or row (Gemm [N][K], Conv [O][C·kh·kw]) `line`, its members `stride` apart.
  const group = (i: number, line: number, values: number[]) => {
    const at = stride === cols ? 4 * i * cols + line : line * cols + 4 * i * stride;
    values.forEach((v, j) => (bits[at + j * stride] = v));
  };
  const half = conv(0.25);
  group(0, 0, [half, half ^ 0x8000, half, half ^ 0x8000]); // four equal magnitudes: the lower indices win
  group(1, 1, [0x8000, 0x8000, 0x0000, b.tiny]); // −0 kept, +0, a subnormal kept
  group(2, 2, [conv(-0.125), 0x8000, b.tiny | 0x8000, 0x0000]);
  if (nonFinite) {
    group(3, 3, [b.nanPayload, b.nan, conv(0.01), b.nan]); // a NaN is kept: NaNs rank lowest, not gone
    group(5, 5, [b.inf, conv(0.5), b.negInf, conv(-0.75)]);
  }
  return bits;
}

interface Shape {
  K: number;
  H: number;
}
/** Big enough for several chunks of 2^20 values in both layouts (MatMul [320][4096]: 64 groups a chunk). */
const BIG: Shape = { K: 320, H: 4096 };
/** The scored and SparseGPT paths take whole weights (no chunks): small enough for quick calibration passes. */
const SMALL: Shape = { K: 64, H: 256 };

const UP = 'onnx::MatMul_123';
const DOWN = 'model.layers.0.mlp.down_proj.weight';

const CONV = 'backbone.conv1.weight';

/**
 * x [batch, K] → /model/layers.0/mlp/up_proj/MatMul (UP [K][H]) → Relu → /model/layers.0/mlp/down_proj/Gemm
 * (DOWN [K][H], transB = 1) → y. fp16 computes in fp16 (Casts at the ends); bf16 weights sit behind Casts to
 * float32 (ONNX Runtime's CPU EP has no bf16 MatMul). `transposed` stores each weight transposed behind a
 * Transpose node instead (the canonical path's reference). `conv` adds img → /backbone/conv1/Conv (CONV
 * [512][256][3][3], N:M along input channels) → z, for the direct calls only.
 */
function mlp(dtype: Half, s: Shape, transposed: boolean, nonFinite: boolean, conv = false): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['batch', s.K]);
  let h = dtype === 'float16' ? b.node('Cast', ['x'], { to: 10 }) : 'x';
  const weight = (name: string, rows: number, cols: number, stride: number, seed: number) => {
    const bits = weightBits(dtype, rows, cols, seed, stride, nonFinite);
    let w = transposed
      ? b.node('Transpose', [b.initializer(name, dtype, [cols, rows], transpose16(bits, rows, cols))], {
          perm: [1, 0],
        })
      : b.initializer(name, dtype, [rows, cols], bits);
    if (dtype === 'bfloat16') w = b.node('Cast', [w], { to: 1 });
    return w;
  };
  h = b.node('MatMul', [h, weight(UP, s.K, s.H, s.H, 7)], {}, { name: '/model/layers.0/mlp/up_proj/MatMul' });
  h = b.node('Relu', [h]);
  h = b.node('Gemm', [h, weight(DOWN, s.K, s.H, 1, 8)], { transB: 1 }, { name: '/model/layers.0/mlp/down_proj/Gemm' });
  if (dtype === 'float16') h = b.node('Cast', [h], { to: 1 });
  b.node('Identity', [h], {}, { output: 'y' });
  b.output('y', 'float32', ['batch', s.K]);
  if (conv) {
    b.input('img', dtype, [1, 256, 8, 8]);
    const w = b.initializer(CONV, dtype, [512, 256, 3, 3], weightBits(dtype, 512, 256 * 9, 9, 9, nonFinite));
    b.node('Conv', ['img', w], { pads: [1, 1, 1, 1] }, { name: '/backbone/conv1/Conv', output: 'z' });
    b.output('z', dtype, [1, 512, 8, 8]);
  }
  return b.build();
}

/** [rows][cols] of 2-byte elements → [cols][rows]. */
function transpose16(bits: Uint16Array, rows: number, cols: number): Uint16Array {
  const out = new Uint16Array(bits.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = bits[r * cols + c];
  return out;
}

function bits16(bytes: Uint8Array): Uint16Array {
  const copy = bytes.slice();
  return new Uint16Array(copy.buffer, 0, copy.length / 2);
}

/** Equal bit patterns, or the first difference. */
function assertSameBits(got: Uint16Array, want: Uint16Array, what: string): void {
  assert.equal(got.length, want.length, what);
  const i = got.findIndex((v, j) => v !== want[j]);
  assert.ok(i < 0, `${what}: element ${i} is 0x${got[i]?.toString(16)}, canonical 0x${want[i]?.toString(16)}`);
}

function initializer(m: LoadedModel, name: string) {
  return m.proto.graph!.initializer.find((t) => t.name === name)!;
}

test('fp16/bf16 magnitude N:M in the stored layout (MatMul, Gemm, Conv; in memory, lazily read, external) writes the canonical bytes', async () => {
  const dir = tempDir('fp16-stored-');
  try {
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const inline = join(dir, `${dtype}.onnx`);
      await saveModel(mlp(dtype, BIG, false, true, true), inline);
      const external = join(dir, `${dtype}-ext.onnx`);
      await saveModel(mlp(dtype, BIG, false, true, true), external, { externalData: { sizeThreshold: 0 } });

      // The canonical path's steps, as pruneOne takes them.
      const ref = await loadModel(inline, { lazyMinBytes: Infinity });
      const want = discoverWeights(ref).map((w) => {
        const rows = readWeightMatrix(ref, w);
        const nonFinite = rows.filter((v) => !Number.isFinite(v)).length;
        applyMask(rows, nmMask(magnitudeScores(rows), w.N, w.K, 2, 4));
        writeWeightMatrix(ref, w, rows);
        const sparsity = rows.filter((v) => v === 0).length / rows.length;
        return {
          name: w.name,
          sparsity,
          violations: 0,
          nonFinite,
          bits: bits16(tensorBytes(ref, initializer(ref, w.name))),
        };
      });
      closeModel(ref);
      assert.deepEqual(
        want.map((w) => [w.name, w.nonFinite]),
        [
          [UP, 5],
          [DOWN, 5],
          [CONV, 5],
        ],
      );

      for (const [what, file, lazyMinBytes] of [
        ['in memory', inline, Infinity],
        ['lazily read', inline, undefined],
        ['external data', external, undefined],
      ] as const) {
        const m = await loadModel(file, lazyMinBytes === undefined ? {} : { lazyMinBytes });
        for (const w of discoverWeights(m)) {
          const stored = storedFloatTensor(m, w)!;
          assert.equal(stored.dtype, dtype);
          const r = pruneStoredMagnitudeNM(m, stored.tensor, storedLayout(w, 4)!, 2);
          const ref = want.find((x) => x.name === w.name)!;
          assert.deepEqual(r, { sparsity: ref.sparsity, violations: 0, nonFinite: ref.nonFinite }, `${what} ${w.name}`);
          assert.equal(!!m.spill && lazyRawOf(stored.tensor)?.source === m.spill, what !== 'in memory', what);
          assertSameBits(bits16(tensorBytes(m, stored.tensor)), ref.bits, `${dtype} ${what} ${w.name}`);
        }
        closeModel(m);
      }
    }
  } finally {
    removeDir(dir);
  }
});

interface Pruned {
  bits: Map<string, Uint16Array>;
  rows: LayerReport[];
}

/** Runs `recipe` on the model and returns its weights' bits, as stored in the un-transposed model, and its rows. */
async function runJob(
  dir: string,
  tag: string,
  model: LoadedModel,
  s: Shape,
  recipe: Record<string, unknown>,
  opts: { transposed: boolean; external: boolean; calibrated: boolean },
): Promise<Pruned> {
  const path = join(dir, `${tag}.onnx`);
  await saveModel(model, path, opts.external ? { externalData: { sizeThreshold: 0 } } : {});
  const out = join(dir, `${tag}-out`);
  const res = await runRecipe(
    { ...recipe, ...(opts.calibrated ? { calibration: { random: true, samples: 32 } } : {}) } as unknown as Recipe,
    { modelPath: path, outputDir: out },
  );
  const m = await loadModel(join(out, 'model.onnx'));
  const bits = new Map<string, Uint16Array>();
  for (const name of [UP, DOWN]) {
    const t = initializer(m, name);
    const dims = t.dims.map(Number);
    // The reference keeps its Transposes (so the canonical path ran): [cols][rows] back to [rows][cols].
    assert.deepEqual(dims, opts.transposed ? [s.H, s.K] : [s.K, s.H], `${tag} ${name}`);
    const b = bits16(tensorBytes(m, t));
    bits.set(name, opts.transposed ? transpose16(b, s.H, s.K) : b);
  }
  assert.equal(m.proto.graph!.node.filter((n) => n.opType === 'Transpose').length, opts.transposed ? 2 : 0, tag);
  closeModel(m);
  return { bits, rows: res.report.layers };
}

/** Same bytes; same sparsity, non-finite count and verification; layer errors equal up to float rounding. */
function assertSame(got: Pruned, want: Pruned, what: string): void {
  for (const [name, b] of want.bits) assertSameBits(got.bits.get(name)!, b, `${what} ${name}`);
  assert.equal(got.rows.length, 2, what);
  for (const [i, r] of got.rows.entries()) {
    const c = want.rows[i];
    assert.deepEqual(
      [r.name, r.sparsity, r.nonFinite, r.patternVerified, r.skipped],
      [c.name, c.sparsity, c.nonFinite, c.patternVerified, c.skipped],
      `${what} ${r.name}`,
    );
    if (c.relError === null) assert.equal(r.relError, null, `${what} ${r.name}`);
    else
      assert.ok(
        Math.abs(r.relError! - c.relError!) <= 1e-5 * c.relError!,
        `${what} ${r.name}: ${r.relError} vs ${c.relError}`,
      );
  }
}

const JOBS: { name: string; recipe: Record<string, unknown>; calibrated: boolean; shape: Shape }[] = [
  { name: 'magnitude', recipe: { method: 'sparsity', pattern: '2:4' }, calibrated: false, shape: BIG },
  { name: 'magnitude 1:4 calibrated', recipe: { method: 'sparsity', pattern: '1:4' }, calibrated: true, shape: SMALL },
  { name: 'wanda', recipe: { method: 'sparsity', pattern: '2:4', criterion: 'wanda' }, calibrated: true, shape: SMALL },
  {
    name: 'sparsegpt',
    recipe: { method: 'sparsity', pattern: '2:4', criterion: 'sparsegpt' },
    calibrated: true,
    shape: SMALL,
  },
  {
    name: 'sparsegpt unstructured',
    recipe: { method: 'sparsity', sparsity: 0.5, criterion: 'sparsegpt' },
    calibrated: true,
    shape: SMALL,
  },
];

for (const job of JOBS) {
  test(`fp16/bf16 ${job.name} job (PyTorch-style names, in memory and external data): the canonical path's bytes and rows`, async () => {
    const dir = tempDir('fp16-stored-job-');
    try {
      for (const dtype of ['float16', 'bfloat16'] as const) {
        // NaN/±Inf only where no calibration pass runs (they would reach the activations) and SparseGPT is not asked.
        const nonFinite = !job.calibrated;
        const canonical = await runJob(
          dir,
          `${dtype}-canonical`,
          mlp(dtype, job.shape, true, nonFinite),
          job.shape,
          job.recipe,
          {
            transposed: true,
            external: false,
            calibrated: job.calibrated,
          },
        );
        for (const external of [false, true]) {
          const tag = `${dtype}-stored${external ? '-ext' : ''}`;
          const got = await runJob(dir, tag, mlp(dtype, job.shape, false, nonFinite), job.shape, job.recipe, {
            transposed: false,
            external,
            calibrated: job.calibrated,
          });
          assertSame(got, canonical, `${job.name} ${tag}`);
        }
      }
    } finally {
      removeDir(dir);
    }
  });
}
