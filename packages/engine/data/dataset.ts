// Loading a dataset file for a model and checking that it fits: .npz (one array per input, keyed by input name, plus
// optional `labels`), .npy (single-input models), or a folder of ONNX TensorProto files (input_0.pb … [labels.pb], or
// test_data_set_*/ subfolders whose batches are concatenated). Every mismatch against the model is reported, not
// just the first.
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { fitProblems, LABELS_KEY, singleArrayInput } from './fit.js';
import type { ModelInputSpec } from './inputs.js';
import { decodeNpy } from './npy.js';
import { decodeNpz } from './npz.js';
import { decodeTensorProto } from './tensorpb.js';
import { DatasetError, typedArrayFor, type DataArray, type Dataset } from './types.js';

export { LABELS_KEY };

/** Largest dataset file read into memory. */
export const MAX_DATASET_FILE_BYTES = 2 ** 31 - 1;

/** Reads a dataset file and validates it against the model's inputs. */
export async function loadDataset(path: string, specs: ModelInputSpec[]): Promise<Dataset> {
  const label = basename(path);
  let st;
  try {
    st = await stat(path);
  } catch {
    throw new DatasetError('not-found', `dataset ${path} does not exist`);
  }
  let arrays: Map<string, DataArray>;
  if (st.isDirectory()) {
    arrays = await readTensorFolder(path, specs);
  } else {
    if (st.size > MAX_DATASET_FILE_BYTES) {
      throw new DatasetError('too-large', `${label}: ${st.size} bytes is over the ${MAX_DATASET_FILE_BYTES} limit`);
    }
    const bytes = new Uint8Array(await readFile(path));
    const ext = extname(path).toLowerCase();
    if (ext === '.npz' || (bytes[0] === 0x50 && bytes[1] === 0x4b)) {
      arrays = decodeNpz(bytes, label);
    } else if (ext === '.npy' || bytes[0] === 0x93) {
      arrays = singleArray(decodeNpy(bytes, label), specs, label);
    } else if (ext === '.pb') {
      const t = decodeTensorProto(bytes, label);
      arrays = singleArray(t.array, specs, label, t.name);
    } else {
      throw new DatasetError(
        'unsupported-format',
        `${label}: unknown dataset format (use .npz, .npy, or a folder of TensorProto .pb files)`,
      );
    }
  }
  return validateDataset(arrays, specs, path);
}

function singleArray(arr: DataArray, specs: ModelInputSpec[], label: string, name?: string): Map<string, DataArray> {
  const fed = singleArrayInput(name, specs, label);
  if ('problem' in fed) throw new DatasetError(fed.problem.code, fed.problem.message);
  return new Map([[fed.input, arr]]);
}

async function readTensorFolder(dir: string, specs: ModelInputSpec[]): Promise<Map<string, DataArray>> {
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
  const sets = entries.filter((e) => e.isDirectory() && /^test_data_set_\d+$/.test(e.name));
  if (sets.length === 0) return readTensorSet(dir, specs);
  sets.sort((a, b) => Number(a.name.split('_').pop()) - Number(b.name.split('_').pop()));
  const parts: Map<string, DataArray>[] = [];
  for (const s of sets) parts.push(await readTensorSet(join(dir, s.name), specs));
  return concatSets(parts, dir);
}

async function readTensorSet(dir: string, specs: ModelInputSpec[]): Promise<Map<string, DataArray>> {
  const names = (await readdir(dir)).filter((n) => /^input_\d+\.pb$/.test(n));
  names.sort((a, b) => Number(a.slice(6, -3)) - Number(b.slice(6, -3)));
  if (names.length === 0) {
    throw new DatasetError('empty', `${dir}: no input_<i>.pb files (the ONNX test-data layout)`);
  }
  const out = new Map<string, DataArray>();
  for (const n of names) {
    const index = Number(n.slice(6, -3));
    const t = decodeTensorProto(new Uint8Array(await readFile(join(dir, n))), join(basename(dir), n));
    // A named tensor maps by name; an unnamed one by position, as in the ONNX test-data layout.
    const key = t.name && specs.some((s) => s.name === t.name) ? t.name : (specs[index]?.name ?? t.name ?? n);
    out.set(key, t.array);
  }
  try {
    const lb = await readFile(join(dir, `${LABELS_KEY}.pb`));
    out.set(LABELS_KEY, decodeTensorProto(new Uint8Array(lb), `${basename(dir)}/labels.pb`).array);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT') throw e;
  }
  return out;
}

function concatSets(parts: Map<string, DataArray>[], label: string): Map<string, DataArray> {
  const out = new Map<string, DataArray>();
  for (const key of parts[0].keys()) {
    const arrs = parts.map((p, i) => {
      const a = p.get(key);
      if (!a) throw new DatasetError('missing-input', `${label}: test_data_set_${i} has no "${key}"`);
      return a;
    });
    const first = arrs[0];
    const rest = first.dims.slice(1).join(',');
    for (const a of arrs) {
      if (a.dtype !== first.dtype || a.dims.slice(1).join(',') !== rest) {
        throw new DatasetError('dim-mismatch', `${label}: "${key}" differs in dtype or trailing dims across sets`);
      }
    }
    const total = arrs.reduce((s, a) => s + a.data.length, 0);
    const data = typedArrayFor(first.dtype, total);
    let off = 0;
    for (const a of arrs) {
      (data as Uint8Array).set(a.data as Uint8Array, off);
      off += a.data.length;
    }
    out.set(key, {
      dtype: first.dtype,
      dims: [arrs.reduce((s, a) => s + (a.dims[0] ?? 1), 0), ...first.dims.slice(1)],
      data,
    });
  }
  return out;
}

/** Checks arrays against the model inputs with the rules of fit.ts (every problem listed), and builds the Dataset. */
export function validateDataset(arrays: Map<string, DataArray>, specs: ModelInputSpec[], source: string): Dataset {
  const shapes = new Map([...arrays].map(([key, a]) => [key, { dtype: a.dtype, shape: a.dims }]));
  const problems = fitProblems(shapes, specs);
  if (problems.length) {
    const msg = `${basename(source)} does not fit the model: ${problems.map((p) => p.message).join('; ')}`;
    throw new DatasetError(
      problems[0].code,
      msg,
      problems.map((p) => p.message),
    );
  }
  const inputs = new Map(specs.map((s) => [s.name, arrays.get(s.name)!]));
  const ds: Dataset = { inputs, samples: specs.length ? inputs.get(specs[0].name)!.dims[0] : 0, source };
  const labels = arrays.get(LABELS_KEY);
  if (labels) ds.labels = labels;
  return ds;
}

/** A slice of samples [start, start+count) of every input, as zero-copy views. */
export interface Batch {
  start: number;
  count: number;
  inputs: Map<string, DataArray>;
  labels?: DataArray;
}

export function sliceSamples(a: DataArray, start: number, count: number): DataArray {
  // A rank-0 input (a scalar: a temperature, a scale) has no sample axis: every batch feeds it as it is.
  if (a.dims.length === 0) return a;
  const row = a.dims[0] === 0 ? 0 : a.data.length / a.dims[0];
  const data = a.data.subarray(start * row, (start + count) * row) as DataArray['data'];
  return { dtype: a.dtype, dims: [count, ...a.dims.slice(1)], data };
}

/**
 * Splits the first `limit` samples into batches of `batchSize`. When the model fixes the batch dim (`fixedBatch`),
 * every batch has exactly that many samples and a remainder that cannot fill one is left out (`dropped`).
 */
export function planBatches(
  samples: number,
  batchSize: number,
  limit?: number,
  fixedBatch?: number,
): { ranges: [number, number][]; used: number; dropped: number } {
  const total = Math.min(samples, limit ?? samples);
  const size = fixedBatch ?? Math.max(1, batchSize);
  const ranges: [number, number][] = [];
  let s = 0;
  for (; s + size <= total; s += size) ranges.push([s, size]);
  let dropped = 0;
  if (s < total) {
    if (fixedBatch === undefined) ranges.push([s, total - s]);
    else dropped = total - s;
  }
  return { ranges, used: total - dropped, dropped };
}

export function* batches(ds: Dataset, ranges: [number, number][]): Generator<Batch> {
  for (const [start, count] of ranges) {
    const inputs = new Map<string, DataArray>();
    for (const [k, a] of ds.inputs) inputs.set(k, sliceSamples(a, start, count));
    const b: Batch = { start, count, inputs };
    if (ds.labels) b.labels = sliceSamples(ds.labels, start, count);
    yield b;
  }
}

/** The batch dim the model fixes for all inputs (its dim 0 when numeric), if any. */
export function fixedBatchSize(specs: ModelInputSpec[]): number | undefined {
  for (const s of specs) {
    const d = s.dims?.[0];
    if (typeof d === 'number' && d > 0) return d;
  }
  return undefined;
}
