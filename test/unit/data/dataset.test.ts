// Dataset files against model inputs: every mismatch is named; TensorProto folders; batching; random data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, toBinary } from '@bufbuild/protobuf';
import { TensorProto_DataType, TensorProtoSchema } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { loadDataset, planBatches, batches } from '../../../packages/engine/data/dataset.js';
import type { ModelInputSpec } from '../../../packages/engine/data/inputs.js';
import { randomDataset } from '../../../packages/engine/data/random.js';
import { DatasetError } from '../../../packages/engine/data/types.js';

const fixture = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));
const lmSpec: ModelInputSpec[] = [{ name: 'input_ids', dtype: 'int64', dims: ['batch', 'seq'] }];

test('an .npz keyed by input name loads with its labels', async () => {
  const ds = await loadDataset(fixture('lm.npz'), lmSpec);
  assert.equal(ds.samples, 4);
  assert.deepEqual(ds.labels?.dims, [4, 8]);
  assert.equal(ds.random, undefined);
});

test('every mismatch is listed: missing input, unknown array, dtype, rank, fixed dim', async () => {
  const specs: ModelInputSpec[] = [
    { name: 'x', dtype: 'float32', dims: ['n', 3, 5] },
    { name: 'mask', dtype: 'int64', dims: ['n', 3] },
    { name: 'extra', dtype: 'float32', dims: ['n'] },
  ];
  await assert.rejects(loadDataset(fixture('two.npz'), specs), (e: unknown) => {
    assert.ok(e instanceof DatasetError);
    assert.equal(e.name, 'DatasetError');
    assert.equal(e.problems.length, 3, e.message);
    assert.match(e.message, /input "x": axis 2 is 4, the model fixes it at 5/);
    assert.match(e.message, /input "mask": data is float32, the model expects int64/);
    assert.match(e.message, /model input "extra" float32 \[n\] has no array/);
    return true;
  });
  await assert.rejects(
    loadDataset(fixture('two.npz'), [{ name: 'x', dtype: 'float32', dims: ['n', 3, 4] }]),
    (e: unknown) =>
      e instanceof DatasetError && e.code === 'unknown-input' && /"mask" is not a model input/.test(e.message),
  );
  await assert.rejects(
    loadDataset(fixture('f32.npy'), [{ name: 'x', dtype: 'float32', dims: ['n', 4, 1] }]),
    (e: unknown) => e instanceof DatasetError && e.code === 'rank-mismatch',
  );
  await assert.rejects(
    loadDataset(fixture('f64.npy'), [{ name: 'x', dtype: 'float32', dims: ['n', 4] }]),
    (e: unknown) => e instanceof DatasetError && /astype\(np.float32\)/.test(e.message),
  );
  await assert.rejects(
    loadDataset(fixture('f32.npy'), [
      { name: 'a', dtype: 'float32', dims: ['n', 4] },
      { name: 'b', dtype: 'float32', dims: ['n', 4] },
    ]),
    (e: unknown) => e instanceof DatasetError && /single-input model/.test(e.message),
  );
  await assert.rejects(loadDataset('/nonexistent/file.npz', lmSpec), (e: unknown) => {
    return e instanceof DatasetError && e.code === 'not-found';
  });
});

test('a folder of TensorProto files (flat, and test_data_set_* concatenated) loads by position and name', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ds-'));
  try {
    const tensor = (name: string, dims: number[], values: number[]) =>
      toBinary(
        TensorProtoSchema,
        create(TensorProtoSchema, {
          name,
          dims: dims.map(BigInt),
          dataType: TensorProto_DataType.FLOAT,
          floatData: values,
        }),
      );
    const ids = (dims: number[], values: bigint[]) =>
      toBinary(
        TensorProtoSchema,
        create(TensorProtoSchema, { dims: dims.map(BigInt), dataType: TensorProto_DataType.INT64, int64Data: values }),
      );
    const specs: ModelInputSpec[] = [
      { name: 'x', dtype: 'float32', dims: ['n', 2] },
      { name: 'ids', dtype: 'int64', dims: ['n'] },
    ];
    for (const s of [0, 1]) {
      const d = join(dir, `test_data_set_${s}`);
      mkdirSync(d);
      writeFileSync(join(d, 'input_0.pb'), tensor('', [1, 2], [s, s + 0.5]));
      writeFileSync(join(d, 'input_1.pb'), ids([1], [BigInt(10 + s)]));
    }
    const ds = await loadDataset(dir, specs);
    assert.equal(ds.samples, 2);
    assert.deepEqual([...ds.inputs.get('x')!.data], [0, 0.5, 1, 1.5]);
    assert.deepEqual([...ds.inputs.get('ids')!.data], [10n, 11n]);

    const flat = join(dir, 'flat');
    mkdirSync(flat);
    writeFileSync(join(flat, 'input_0.pb'), tensor('x', [3, 2], [1, 2, 3, 4, 5, 6]));
    writeFileSync(join(flat, 'input_1.pb'), ids([2], [1n, 2n]));
    await assert.rejects(
      loadDataset(flat, specs),
      (e: unknown) => e instanceof DatasetError && e.code === 'sample-count-mismatch',
    );
    writeFileSync(join(flat, 'input_1.pb'), new Uint8Array([0xff, 0xff, 0xff]));
    await assert.rejects(
      loadDataset(flat, specs),
      (e: unknown) => e instanceof DatasetError && e.code === 'bad-tensor',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('batches cover the samples once; a fixed batch dim drops the remainder', async () => {
  assert.deepEqual(planBatches(10, 4).ranges, [
    [0, 4],
    [4, 4],
    [8, 2],
  ]);
  assert.deepEqual(planBatches(10, 4, 6).ranges, [
    [0, 4],
    [4, 2],
  ]);
  const fixed = planBatches(10, 4, undefined, 3);
  assert.deepEqual(fixed.ranges.length, 3);
  assert.equal(fixed.dropped, 1);
  const ds = await loadDataset(fixture('lm.npz'), lmSpec);
  const got = [...batches(ds, planBatches(ds.samples, 3).ranges)];
  assert.deepEqual(
    got.map((b) => b.inputs.get('input_ids')!.dims),
    [
      [3, 8],
      [1, 8],
    ],
  );
  assert.equal(
    (got[1].inputs.get('input_ids')!.data as BigInt64Array)[0],
    (ds.inputs.get('input_ids')!.data as BigInt64Array)[24],
  );
  assert.deepEqual(got[1].labels?.dims, [1, 8]);
});

test('random data follows the input specs, the vocabulary hint, and the seed', () => {
  const specs: ModelInputSpec[] = [
    { name: 'ids', dtype: 'int64', dims: ['b', 's'] },
    { name: 'x', dtype: 'float32', dims: [1, 3, 'w'] },
  ];
  const a = randomDataset(specs, { samples: 5, seed: 7, symbolicDim: 16, intRanges: new Map([['ids', 100]]) });
  const b = randomDataset(specs, { samples: 5, seed: 7, symbolicDim: 16, intRanges: new Map([['ids', 100]]) });
  assert.equal(a.random, true);
  assert.deepEqual(a.inputs.get('ids')!.dims, [5, 16]);
  assert.deepEqual(a.inputs.get('x')!.dims, [5, 3, 16]);
  assert.deepEqual([...a.inputs.get('x')!.data], [...b.inputs.get('x')!.data]);
  const ids = [...(a.inputs.get('ids')!.data as BigInt64Array)].map(Number);
  assert.ok(ids.every((v) => v >= 0 && v < 100));
  assert.ok(new Set(ids).size > 30);
  const xs = a.inputs.get('x')!.data as Float32Array;
  const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
  const varc = xs.reduce((s, v) => s + (v - mean) ** 2, 0) / xs.length;
  assert.ok(Math.abs(mean) < 0.25 && Math.abs(varc - 1) < 0.3, `mean ${mean} var ${varc}`);
  assert.throws(() => randomDataset([{ name: 's', dtype: 'STRING', dims: ['b'] }], { samples: 1 }), DatasetError);
});

test('random data for every numeric type; a non-numeric input names what to give instead', () => {
  const ints = ['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64'] as const;
  const specs: ModelInputSpec[] = [
    ...ints.map((dtype) => ({ name: dtype, dtype, dims: ['b', 4] as (number | string)[] })),
    { name: 'h', dtype: 'float16', dims: ['b', 4] },
    { name: 'd', dtype: 'float64', dims: ['b', 4] },
    { name: 'm', dtype: 'bool', dims: ['b', 4] },
  ];
  // A vocabulary larger than int8 holds: ids stay inside the type.
  const vocab = new Map(ints.map((t) => [t, 1000] as [string, number]));
  const ds = randomDataset(specs, { samples: 64, seed: 3, intRanges: vocab });
  for (const t of ints) {
    const a = ds.inputs.get(t)!;
    assert.equal(a.dtype, t);
    assert.deepEqual(a.dims, [64, 4]);
    const values = [...a.data].map(Number);
    const hi = t === 'int8' ? 128 : t === 'uint8' ? 256 : 1000;
    assert.ok(
      values.every((v) => Number.isInteger(v) && v >= 0 && v < hi),
      t,
    );
    assert.ok(new Set(values).size > 20, `${t}: ids spread over the range`);
  }
  assert.equal(ds.inputs.get('h')!.data.constructor, Uint16Array);
  assert.equal(ds.inputs.get('m')!.dtype, 'bool');

  assert.throws(
    () => randomDataset([{ name: 'text', dtype: 'STRING', dims: ['b'] }], { samples: 1 }),
    (e: Error) =>
      e instanceof DatasetError &&
      /input "text" is STRING: no random calibration data for it/.test(e.message) &&
      /--calibration FILE on the CLI, calibrationDatasetId in the API/.test(e.message),
  );
});
