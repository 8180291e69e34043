// NumPy .npz reader/writer: a zip archive of .npy files (np.savez stores, np.savez_compressed deflates). Entry
// "input_ids.npy" holds the array keyed "input_ids". Declared sizes are checked before anything is inflated.
import { unzipSync, zipSync, type Zippable } from 'fflate';
import { decodeNpy, encodeNpy, MAX_NPY_BYTES } from './npy.js';
import { DatasetError, type DataArray } from './types.js';

/** Largest total uncompressed size accepted from one .npz. */
export const MAX_NPZ_BYTES = 8 * 2 ** 30;

export function decodeNpz(bytes: Uint8Array, label = 'archive'): Map<string, DataArray> {
  if (bytes.length < 4 || bytes[0] !== 0x50 || bytes[1] !== 0x4b) {
    throw new DatasetError('bad-npz', `${label}: not a .npz file (not a zip archive)`);
  }
  let total = 0;
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes, {
      filter(info) {
        if (info.name.endsWith('/')) return false;
        if (info.originalSize > MAX_NPY_BYTES + 1024) {
          throw new DatasetError(
            'too-large',
            `${label}: entry ${info.name} inflates to ${info.originalSize} bytes (limit ${MAX_NPY_BYTES})`,
          );
        }
        total += info.originalSize;
        if (total > MAX_NPZ_BYTES) {
          throw new DatasetError('too-large', `${label}: archive inflates to more than ${MAX_NPZ_BYTES} bytes`);
        }
        if (info.compression !== 0 && info.compression !== 8) {
          throw new DatasetError(
            'bad-npz',
            `${label}: entry ${info.name} uses zip compression method ${info.compression} (only stored/deflate)`,
          );
        }
        return true;
      },
    });
  } catch (e) {
    if (e instanceof DatasetError) throw e;
    throw new DatasetError('bad-npz', `${label}: cannot read the zip archive (${(e as Error).message})`);
  }
  const out = new Map<string, DataArray>();
  for (const [name, data] of Object.entries(files)) {
    if (!name.endsWith('.npy')) {
      throw new DatasetError('bad-npz', `${label}: entry "${name}" is not a .npy array`);
    }
    const key = name.slice(0, -4);
    out.set(key, decodeNpy(data, `${label}[${key}]`));
  }
  if (out.size === 0) throw new DatasetError('empty', `${label}: the archive holds no arrays`);
  return out;
}

/** Writes arrays as an uncompressed .npz (what np.savez produces). */
export function encodeNpz(arrays: Map<string, DataArray> | Record<string, DataArray>): Uint8Array {
  const entries = arrays instanceof Map ? [...arrays] : Object.entries(arrays);
  const zip: Zippable = {};
  for (const [name, arr] of entries) zip[`${name}.npy`] = [encodeNpy(arr), { level: 0 }];
  return zipSync(zip);
}
