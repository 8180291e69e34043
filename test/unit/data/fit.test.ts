// One set of dataset rules: what inspection summarises (header-only for .npy) and datasetFitProblems says about the
// summary is what the loader says about the decoded file, message for message (the API checks the first at job
// submission, the worker the second).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../../../packages/engine/data/dataset.js';
import { datasetFitProblems } from '../../../packages/engine/data/fit.js';
import { inspectDatasetFile } from '../../../packages/engine/data/inspect.js';
import type { ModelInputSpec } from '../../../packages/engine/data/inputs.js';
import { encodeNpy } from '../../../packages/engine/data/npy.js';
import { encodeNpz } from '../../../packages/engine/data/npz.js';
import { DatasetError, type DataArray } from '../../../packages/engine/data/types.js';

const fixture = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));
const f32 = (dims: number[]): DataArray => ({
  dtype: 'float32',
  dims,
  data: new Float32Array(dims.reduce((a, d) => a * d, 1)),
});

/** The loader's problems for a file (none when it loads). */
async function loaderProblems(path: string, specs: ModelInputSpec[]): Promise<string[]> {
  try {
    await loadDataset(path, specs);
    return [];
  } catch (e) {
    assert.ok(e instanceof DatasetError, String(e));
    return e.problems;
  }
}

/** The same file inspected, then checked from its summary alone. */
async function summaryProblems(path: string, name: string, specs: ModelInputSpec[]): Promise<string[]> {
  const inspected = await inspectDatasetFile({ path, sizeBytes: statSync(path).size, clientName: name });
  return datasetFitProblems(inspected, specs, name).map((p) => p.message);
}

test('the summary check and the loader find the same problems in the same words', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fit-'));
  try {
    const labels = { dtype: 'float32' as const, dims: [3], data: new Float32Array(3) };
    const cases: [string, Uint8Array, ModelInputSpec[]][] = [
      ['fits.npz', encodeNpz(new Map([['x', f32([4, 8])]])), [{ name: 'x', dtype: 'float32', dims: ['n', 8] }]],
      [
        'every-problem.npz',
        encodeNpz(
          new Map([
            ['x', f32([4, 3, 4])],
            ['mask', f32([5, 3])],
            ['stray', f32([4])],
            ['labels', labels],
          ]),
        ),
        [
          { name: 'x', dtype: 'float32', dims: ['n', 3, 5] },
          { name: 'mask', dtype: 'int64', dims: ['n', 3, 1] },
          { name: 'extra', dtype: 'float32', dims: ['n'] },
        ],
      ],
      ['zero.npz', encodeNpz(new Map([['x', f32([0, 8])]])), [{ name: 'x', dtype: 'float32', dims: ['n', 8] }]],
      ['single.npy', encodeNpy(f32([4, 8])), [{ name: 'pixels', dtype: 'float32', dims: ['n', 8] }]],
      [
        'two-inputs.npy',
        encodeNpy(f32([4, 8])),
        [
          { name: 'a', dtype: 'float32', dims: ['n', 8] },
          { name: 'b', dtype: 'float32', dims: ['n', 8] },
        ],
      ],
    ];
    for (const [name, bytes, specs] of cases) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      const loader = await loaderProblems(path, specs);
      assert.deepEqual(await summaryProblems(path, name, specs), loader, name);
      assert.equal(loader.length > 0, !name.startsWith('fits') && !name.startsWith('single'), name);
    }
    // The file with every problem lists each of them once.
    const all = await loaderProblems(join(dir, 'every-problem.npz'), cases[1][2]);
    for (const want of [
      /"stray" is not a model input/,
      /input "x": axis 2 is 4, the model fixes it at 5/,
      /input "mask": data is float32, the model expects int64/,
      /input "mask": data has rank 2 \[5, 3\], the model expects rank 3/,
      /model input "extra" float32 \[n\] has no array/,
      /inputs disagree on the number of samples \(x: 4, mask: 5\)/,
      /labels are float32/,
    ]) {
      assert.equal(all.filter((m) => want.test(m)).length, 1, `${want} in ${all.join(' | ')}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('.npy inspection reads the header only and holds the file to the bytes the header announces', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'npy-'));
  try {
    const whole = encodeNpy(f32([4, 4]));
    const inspect = (name: string, bytes: Uint8Array) => {
      writeFileSync(join(dir, name), bytes);
      return inspectDatasetFile({ path: join(dir, name), sizeBytes: bytes.length, clientName: name });
    };
    assert.deepEqual(await inspect('ok.npy', whole), {
      format: 'npy',
      tensors: [{ name: 'array', dtype: 'float32', shape: [4, 4] }],
    });
    await assert.rejects(inspect('short.npy', whole.subarray(0, -4)), (e: unknown) => {
      return e instanceof DatasetError && e.code === 'bad-npy' && /short\.npy: truncated/.test(e.message);
    });
    const longer = new Uint8Array(whole.length + 4);
    longer.set(whole);
    await assert.rejects(inspect('long.npy', longer), (e: unknown) => {
      return e instanceof DatasetError && e.code === 'bad-npy' && /needs 64 data bytes, file has 68/.test(e.message);
    });
    // Only the header is read: a header announcing 1 GiB of data over a file that holds none is caught by size.
    const dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (268435456,), }";
    const text = `${dict.padEnd(117)}\n`;
    const big = new Uint8Array([0x93, ...Buffer.from('NUMPY'), 1, 0, text.length, 0, ...Buffer.from(text, 'latin1')]);
    await assert.rejects(inspect('big.npy', big), (e: unknown) => {
      return e instanceof DatasetError && /needs 1073741824 data bytes, file has 0/.test(e.message);
    });
    // The engine's dtype table and words: an object array is refused as the loader refuses it.
    await assert.rejects(
      inspectDatasetFile({
        path: fixture('object.npy'),
        sizeBytes: statSync(fixture('object.npy')).size,
        clientName: 'o.npy',
      }),
      (e: unknown) => e instanceof DatasetError && e.code === 'bad-npy' && /object and string/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
