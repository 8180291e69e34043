// Loading and saving whole models: decode with typed errors for every class of bad file, validate before use, and
// write either inline or with weights in a side file, streamed piece by piece (never a second copy of the weights).
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from './gen/onnx_pb.js';
import { OnnxError, isOnnxError } from './errors.js';
import { checkLocationSyntax } from './external.js';
import type { LoadedModel } from './loaded.js';
import { closeModel, makeLoadedModel } from './loaded.js';
import type { ExternalPlan, Piece } from './encode.js';
import { encodeModel } from './encode.js';
import { validateModel } from './validate.js';
import { LAZY_MIN_BYTES, LazySource, attachSkeletonRanges, readLazyInto, readSkeleton } from './lazy.js';
import { MAX_GRAPH_DEPTH } from './walk.js';

export type { LoadedModel } from './loaded.js';
export { closeModel };

/** protobuf's hard limit for one message (and so for one .onnx file). */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;
/** Default save switches to external data above this many bytes. */
export const DEFAULT_INLINE_LIMIT = Math.floor(1.8 * 2 ** 30);
export const EXTERNAL_ALIGNMENT = 4096;

export interface SaveOptions {
  /**
   * true / object: tensors of at least `sizeThreshold` bytes go to `location` (next to the model).
   * false: everything inline (fails with 'too-large-for-inline' past protobuf's 2 GiB).
   * @defaultValue inline unless the inline file would exceed 1.8 GiB
   */
  externalData?:
    | boolean
    | {
        /** @defaultValue `<model file name>.data` */
        location?: string;
        /** @defaultValue 1024 */
        sizeThreshold?: number;
      };
  /**
   * @internal With external data, the model's named spill file (made in the output's folder: LoadedModel.spillDir)
   * becomes the side file instead of being copied out: tensors it holds are referenced where they lie, the other
   * external tensors are appended after it, and it is renamed to the side file's name (then sealed: nothing is
   * appended to it again, and closing the model keeps it). Falls back to copying when there is no such spill, it
   * sits in another folder or filesystem, or less than ADOPT_MIN_LIVE of it is still referenced. For a caller that
   * closes the model right after saving (runner/write.ts).
   * @defaultValue false
   */
  adoptSpill?: boolean;
}

/**
 * A spill file is adopted only when at least this fraction of its bytes (alignment gaps aside) is referenced by the
 * saved model. The rest — tensors rewritten twice, or replaced since (quantize swaps weights for new initializers) —
 * would be dead bytes every download of the output carries, in exchange for a copy that costs about as much as
 * writing them; at 10 % the output is at most ~11 % larger than a copy, and the copy saved is the whole spill.
 */
export const ADOPT_MIN_LIVE = 0.9;

export interface LoadOptions {
  /**
   * raw_data payloads of at least this many bytes stay in the file and are read when used (onnx/lazy.ts);
   * `Infinity` reads the whole file into memory.
   * @defaultValue 64 KiB
   */
  lazyMinBytes?: number;
}

export async function loadModel(file: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  let size: number;
  try {
    const st = await fsp.stat(file);
    if (!st.isFile()) throw new OnnxError('not-found', `'${file}' is not a file`);
    size = st.size;
  } catch (e) {
    if (isOnnxError(e)) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new OnnxError(
      'not-found',
      `cannot read '${file}': ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
    );
  }
  if (size === 0) throw new OnnxError('empty-file', `'${file}' is empty`);
  if (size > PROTOBUF_LIMIT)
    throw new OnnxError(
      'file-too-large',
      `'${file}' is ${size} bytes; one protobuf message cannot exceed 2 GiB (models that large keep weights in external data)`,
    );
  const lazyMin = opts.lazyMinBytes ?? LAZY_MIN_BYTES;
  if (!(lazyMin >= 1))
    throw new OnnxError('invalid-argument', `lazyMinBytes must be at least 1 (or Infinity), got ${lazyMin}`);
  if (lazyMin !== Infinity) {
    const lazy = loadLazy(file, size, lazyMin);
    if (lazy) return lazy;
  }
  const bytes = await readWhole(file, size);
  return decodeModel(bytes, path.dirname(path.resolve(file)), path.resolve(file));
}

/**
 * Loads the skeleton of an inline model and leaves its large raw_data in the file (onnx/lazy.ts): no fresh copy of
 * the weights. Undefined when the file has nothing large enough, or anything the wire walker does not take (the
 * caller then decodes the whole file, which gives the same model or the usual typed error).
 */
function loadLazy(file: string, size: number, minBytes: number): LoadedModel | undefined {
  const full = path.resolve(file);
  let fd: number;
  try {
    fd = fs.openSync(full, 'r');
  } catch {
    return undefined;
  }
  let source: LazySource | undefined;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.size !== size) {
      fs.closeSync(fd);
      return undefined;
    }
    source = new LazySource(full, fd);
    const skeleton = readSkeleton(fd, size, minBytes);
    if (!skeleton) {
      source.close();
      return undefined;
    }
    source.check(); // unchanged while the skeleton was read
    let proto;
    try {
      proto = fromBinary(ModelProtoSchema, skeleton.bytes, { recursionLimit: 3 * MAX_GRAPH_DEPTH + 16 });
    } catch {
      source.close();
      return undefined;
    }
    if (!attachSkeletonRanges(proto, skeleton.ranges, source)) {
      source.close();
      return undefined;
    }
    const model = makeLoadedModel(proto, path.dirname(full), full, source);
    try {
      validateModel(model);
    } catch (e) {
      closeModel(model);
      throw decodeError(e);
    }
    return model;
  } catch (e) {
    if (source) source.close();
    else fs.closeSync(fd);
    throw e;
  }
}

/** Reads a file into one buffer with large reads (fs.promises.readFile uses 512 KiB chunks and is slower). */
async function readWhole(file: string, size: number): Promise<Uint8Array> {
  const buf = Buffer.allocUnsafeSlow(size);
  const fh = await fsp.open(file, 'r');
  try {
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, off, Math.min(READ_CHUNK, size - off), off);
      if (bytesRead === 0) throw new OnnxError('truncated', `'${file}' shrank while it was being read`);
      off += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, size);
}

function decodeError(e: unknown): OnnxError {
  if (isOnnxError(e)) return e;
  if ((e instanceof RangeError && /call stack/i.test(e.message)) || /maximum recursion depth/.test(String(e)))
    return new OnnxError('graph-too-deep', 'messages nest too deeply to decode (hostile or corrupt file)');
  const msg = (e as Error).message ?? String(e);
  if (/premature EOF|out of range|index out of/i.test(msg))
    return new OnnxError('truncated', `the file ends in the middle of a message (truncated?): ${msg}`);
  return new OnnxError('not-protobuf', `not a valid protobuf / ONNX file: ${msg}`);
}

/** Decodes and validates a model held in memory. `dir` resolves external data ('' = none allowed). */
export function decodeModel(bytes: Uint8Array, dir = '', filePath?: string): LoadedModel {
  if (bytes.length === 0) throw new OnnxError('empty-file', 'the model is empty (0 bytes)');
  let proto;
  try {
    // Room for MAX_GRAPH_DEPTH subgraph levels (3 messages each) so the walker, not the decoder, reports depth.
    proto = fromBinary(ModelProtoSchema, bytes, { recursionLimit: 3 * MAX_GRAPH_DEPTH + 16 });
  } catch (e) {
    throw decodeError(e);
  }
  const model = makeLoadedModel(proto, dir, filePath);
  try {
    validateModel(model);
  } catch (e) {
    closeModel(model);
    throw decodeError(e);
  }
  return model;
}

function externalPlan(file: string, opt: SaveOptions['externalData']): ExternalPlan {
  const o = typeof opt === 'object' ? opt : {};
  const location = o.location ?? `${path.basename(file)}.data`;
  checkLocationSyntax(location);
  if (/[\\/]/.test(location) || location === '.' || location === '')
    throw new OnnxError('invalid-argument', `external data location '${location}' must be a plain file name`);
  const sizeThreshold = o.sizeThreshold ?? 1024;
  if (!Number.isSafeInteger(sizeThreshold) || sizeThreshold < 0)
    throw new OnnxError('invalid-argument', `sizeThreshold must be a non-negative integer, got ${sizeThreshold}`);
  return { location, sizeThreshold, alignment: EXTERNAL_ALIGNMENT };
}

export async function saveModel(
  model: LoadedModel,
  file: string,
  opts: SaveOptions = {},
): Promise<{ modelBytes: number; externalBytes: number }> {
  const mode = opts.externalData;
  let plan: ExternalPlan | undefined = mode ? externalPlan(file, mode) : undefined;
  let encoded = encodeModel(model, plan);
  if (mode === undefined && encoded.model.size > DEFAULT_INLINE_LIMIT) {
    plan = externalPlan(file, true);
    encoded = encodeModel(model, plan);
  }
  if (encoded.model.size > PROTOBUF_LIMIT)
    throw new OnnxError(
      'too-large-for-inline',
      `the model would be ${encoded.model.size} bytes, past protobuf's 2 GiB limit` +
        (plan ? ' even with weights in external data' : '; save it with external data'),
    );
  const target = path.resolve(file);
  const suffix = `.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  if (plan && opts.adoptSpill) {
    const adopted = await saveAdoptingSpill(model, target, plan, suffix);
    if (adopted) return adopted;
  }
  const dataPath = plan ? path.join(path.dirname(target), plan.location) : undefined;
  const written: string[] = [];
  try {
    if (dataPath && encoded.data.size > 0) {
      await writePieces(dataPath + suffix, encoded.data.pieces, model);
      written.push(dataPath);
    }
    await writePieces(target + suffix, encoded.model.pieces, model);
    written.push(target);
    for (const p of written) await fsp.rename(p + suffix, p);
  } catch (e) {
    for (const p of [target, dataPath]) if (p) await fsp.rm(p + suffix, { force: true });
    if (isOnnxError(e)) throw e;
    throw new OnnxError('io-error', `cannot write '${file}': ${(e as Error).message}`);
  }
  return { modelBytes: encoded.model.size, externalBytes: dataPath ? encoded.data.size : 0 };
}

/**
 * saveModel with the model's spill file as the side file (SaveOptions.adoptSpill). Undefined, with nothing written
 * and the spill as it was, when adoption does not apply (the caller then copies); throws what saveModel throws.
 */
async function saveAdoptingSpill(
  model: LoadedModel,
  target: string,
  plan: ExternalPlan,
  suffix: string,
): Promise<{ modelBytes: number; externalBytes: number } | undefined> {
  const spill = model.spill;
  const scratch = spill?.adoptablePath;
  if (!spill || !scratch || path.dirname(path.resolve(scratch)) !== path.dirname(target)) return undefined;
  const base = Math.ceil(spill.size / plan.alignment) * plan.alignment;
  const encoded = encodeModel(model, { ...plan, adopt: { spill, base } });
  const live = encoded.adoptedBytes;
  if (live === 0 || live < ADOPT_MIN_LIVE * (spill.size - spill.gapBytes)) return undefined;
  if (encoded.model.size > PROTOBUF_LIMIT) return undefined; // the copying path says why
  const dataPath = path.join(path.dirname(target), plan.location);
  const modelTmp = target + suffix;
  const undo = async () => {
    await fsp.rm(modelTmp, { force: true });
    try {
      spill.truncateToSize();
    } catch {
      // closed: nothing left to keep consistent
    }
    spill.unseal();
  };
  spill.seal();
  try {
    if (encoded.data.size > 0) await writePieces(scratch, encoded.data.pieces, model, base);
    await writePieces(modelTmp, encoded.model.pieces, model);
  } catch (e) {
    await undo();
    if (isOnnxError(e)) throw e;
    throw new OnnxError('io-error', `cannot write '${target}': ${(e as Error).message}`);
  }
  try {
    spill.adopt(dataPath);
  } catch {
    await undo(); // e.g. EXDEV: the spill's folder is on another filesystem
    return undefined;
  }
  try {
    await fsp.rename(modelTmp, target);
  } catch (e) {
    try {
      spill.unadopt();
    } catch {
      // the side file stays under its final name, as when the copying path fails at the same step
    }
    await undo();
    throw new OnnxError('io-error', `cannot write '${target}': ${(e as Error).message}`);
  }
  return {
    modelBytes: encoded.model.size,
    externalBytes: encoded.data.size > 0 ? base + encoded.data.size : spill.size,
  };
}

/**
 * The model as one in-memory protobuf whose large tensors that already lie in files directly inside `dir` are
 * external-data references to those files (encode.ts `referenceIn`) rather than copies: a few hundred KB for a model
 * whose weights are all still on disk, for ONNX Runtime to open with `dir` as its external-data folder. Only ranges
 * starting at a multiple of `alignment` are referenced — it then maps
 * or reads each weight from the source itself, with no written copy and no protobuf holding every weight. Tensors
 * that are not in such a file (rewritten, or in memory) are copied in. Undefined when those copies would exceed
 * `maxCopiedBytes` (the caller then writes the model to a file instead).
 */
export function modelBytesReferencing(
  model: LoadedModel,
  dir: string,
  maxCopiedBytes: number,
  alignment = 1,
): Uint8Array | undefined {
  const encoded = encodeModel(model, undefined, { referenceIn: dir, referenceAlignment: alignment });
  const { pieces, size } = encoded.model;
  let copied = 0;
  for (const p of pieces) if (!(p instanceof Uint8Array) || p.length >= 64 * 1024) copied += p.length;
  if (copied > maxCopiedBytes || size > PROTOBUF_LIMIT) return undefined;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of pieces) {
    if (p instanceof Uint8Array) out.set(p, at);
    else if ('lazy' in p) readLazyInto(p.lazy, out.subarray(at, at + p.length), 0);
    else out.set(model.external.read(p.ref, p.length), at);
    at += p.length;
  }
  return out;
}

const readFd = promisify(fs.read);
const READ_CHUNK = 64 * 1024 * 1024;
const STAGING = 4 * 1024 * 1024;
/** Copies from source files (side files, the model file behind lazy tensors, spill files) go through a buffer this
 * large: every byte of it is fresh memory once per save, which costs more here than the extra system calls. */
const COPY_CHUNK = 4 * 1024 * 1024;

/**
 * Writes pieces in order: small ones gathered in a staging buffer, large ones written straight from where they are.
 * A new file, or with `start`: over an existing file from that offset on, cut where the pieces end.
 */
async function writePieces(file: string, pieces: Piece[], model: LoadedModel, start?: number): Promise<void> {
  const fh = await fsp.open(file, start === undefined ? 'w' : 'r+');
  try {
    const staging = Buffer.allocUnsafe(STAGING);
    let used = 0;
    let pos = start ?? 0;
    const writeAll = async (buf: Uint8Array) => {
      let off = 0;
      while (off < buf.length) {
        const { bytesWritten } = await fh.write(buf, off, buf.length - off, pos);
        off += bytesWritten;
        pos += bytesWritten;
      }
    };
    const flush = async () => {
      if (used) await writeAll(staging.subarray(0, used));
      used = 0;
    };
    let copyBuf: Buffer | undefined;
    for (const p of pieces) {
      if (p instanceof Uint8Array) {
        if (p.length <= STAGING / 4) {
          if (used + p.length > STAGING) await flush();
          staging.set(p, used);
          used += p.length;
        } else {
          await flush();
          await writeAll(p);
        }
        continue;
      }
      await flush();
      copyBuf ??= Buffer.allocUnsafe(COPY_CHUNK);
      if ('lazy' in p) {
        // Inline raw_data still in the source model file.
        for (let done = 0; done < p.length;) {
          const chunk = copyBuf.subarray(0, Math.min(COPY_CHUNK, p.length - done));
          readLazyInto(p.lazy, chunk, done);
          await writeAll(chunk);
          done += chunk.length;
        }
        continue;
      }
      const src = model.external.open(p.ref.location);
      for (let done = 0; done < p.length;) {
        const want = Math.min(COPY_CHUNK, p.length - done);
        const { bytesRead } = await readFd(src.fd, copyBuf, 0, want, p.ref.offset + done);
        if (bytesRead === 0)
          throw new OnnxError('external-out-of-range', `external data '${p.ref.location}' ended early while copying`);
        await writeAll(copyBuf.subarray(0, bytesRead));
        done += bytesRead;
      }
    }
    await flush();
    if (start !== undefined) await fh.truncate(pos);
  } finally {
    await fh.close();
  }
}
