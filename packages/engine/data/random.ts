// Random calibration data, only when a recipe asks for it (calibration.random: true); the report then says so. Float
// inputs (float16/32/64) get N(0, 1); integer inputs of every width (token ids) uniform ids in [0, vocab) where vocab
// comes from the embedding table the input indexes (a Gather), else [0, 2); bool inputs fair coin flips. Symbolic
// dims other than the batch axis take `symbolicDim`; a rank-0 input gets one value, which every batch feeds (it has no
// batch axis: see sliceSamples). Seeded, so a job is reproducible.
import { floatToHalfBits } from '../onnx/floats.js';
import type { ModelInputSpec } from './inputs.js';
import { DatasetError, elementCount, typedArrayFor, type DataArray, type Dataset } from './types.js';

export interface RandomDataOptions {
  samples: number;
  /** @defaultValue 0 */
  seed?: number;
  /** Value for symbolic/unknown non-batch dims. @defaultValue 64 */
  symbolicDim?: number;
  /** Exclusive upper bound of integer inputs, per input name (token vocabularies). */
  intRanges?: Map<string, number>;
}

/** One past the largest id each integer type holds (random ids stay below it). */
const INT_LIMIT: Record<string, number> = {
  int8: 2 ** 7,
  int16: 2 ** 15,
  int32: 2 ** 31,
  int64: Number.MAX_SAFE_INTEGER,
  uint8: 2 ** 8,
  uint16: 2 ** 16,
  uint32: 2 ** 32,
  uint64: Number.MAX_SAFE_INTEGER,
};

/** Why an input cannot get random data, and what to give instead (real data, or a model without that input). */
function noRandomData(spec: ModelInputSpec): string {
  const why =
    spec.dtype === 'BFLOAT16'
      ? "onnxruntime-node has no bfloat16 tensors and ONNX Runtime's CPU EP no bfloat16 MatMul: save the model in " +
        'float16, or keep bf16 weights behind a Cast to float32'
      : 'random data is made for numeric tensors only (float16/32/64, int8–64, uint8–64, bool)';
  return (
    `input "${spec.name}" is ${spec.dtype}: no random calibration data for it (${why}); ` +
    'give real calibration data instead (--calibration FILE on the CLI, calibrationDatasetId in the API)'
  );
}

/** Cap on the random data generated (per input). */
const MAX_RANDOM_ELEMENTS = 256 * 2 ** 20;

/** mulberry32: small, fast, good enough for calibration noise. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Box–Muller: two N(0, 1) values from two uniforms, stored through `store`. */
function fillNormal(data: Float32Array | Float64Array | Uint16Array, rand: () => number, store: (x: number) => number) {
  for (let i = 0; i < data.length; i += 2) {
    const u = Math.max(rand(), 1e-12);
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    data[i] = store(r * Math.cos(2 * Math.PI * v));
    if (i + 1 < data.length) data[i + 1] = store(r * Math.sin(2 * Math.PI * v));
  }
}

export function randomDataset(specs: ModelInputSpec[], opts: RandomDataOptions): Dataset {
  const rand = seededRandom(opts.seed ?? 0);
  const symbolic = opts.symbolicDim ?? 64;
  const inputs = new Map<string, DataArray>();
  const shapes: string[] = [];
  for (const spec of specs) {
    if (!spec.dims)
      throw new DatasetError('rank-mismatch', `input "${spec.name}" has no known rank: cannot make random data`);
    const dims = spec.dims.map((d, i) => (i === 0 ? opts.samples : typeof d === 'number' ? d : symbolic));
    const count = elementCount(dims);
    if (count > MAX_RANDOM_ELEMENTS) {
      throw new DatasetError('too-large', `random data for "${spec.name}" [${dims.join(', ')}] is too large`);
    }
    let arr: DataArray;
    switch (spec.dtype) {
      case 'float32':
      case 'float64': {
        const data = typedArrayFor(spec.dtype, count) as Float32Array | Float64Array;
        fillNormal(data, rand, (x) => x);
        arr = { dtype: spec.dtype, dims, data };
        break;
      }
      case 'float16': {
        // Same normals, stored as IEEE half bits (how datasets and ORT hold float16).
        const data = new Uint16Array(count);
        fillNormal(data, rand, floatToHalfBits);
        arr = { dtype: 'float16', dims, data };
        break;
      }
      case 'int8':
      case 'int16':
      case 'int32':
      case 'int64':
      case 'uint8':
      case 'uint16':
      case 'uint32':
      case 'uint64': {
        // Ids below the vocabulary the input indexes (else 0/1), never past what the type holds.
        const hi = Math.min(opts.intRanges?.get(spec.name) ?? 2, INT_LIMIT[spec.dtype]);
        const data = typedArrayFor(spec.dtype, count);
        for (let i = 0; i < count; i++) {
          const v = Math.floor(rand() * hi);
          if (data instanceof BigInt64Array || data instanceof BigUint64Array) data[i] = BigInt(v);
          else data[i] = v;
        }
        arr = { dtype: spec.dtype, dims, data };
        break;
      }
      case 'bool': {
        const data = new Uint8Array(count);
        for (let i = 0; i < count; i++) data[i] = rand() < 0.5 ? 1 : 0;
        arr = { dtype: 'bool', dims, data };
        break;
      }
      default:
        throw new DatasetError('dtype-mismatch', noRandomData(spec));
    }
    inputs.set(spec.name, arr);
    shapes.push(`${spec.name} ${arr.dtype} [${dims.join(', ')}]`);
  }
  return {
    inputs,
    samples: opts.samples,
    random: true,
    source: `random (seed ${opts.seed ?? 0}; ${shapes.join('; ')})`,
  };
}
