// External data: tensors whose bytes live in a side file next to the model. Every `location` is checked for
// containment inside the model's folder before anything is opened (the CVE classes: absolute paths, `..`, symlinks
// and hard links out of the folder, offset/length past the end), then the file stays open so a later swap of the
// path cannot redirect reads.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TensorProto } from './gen/onnx_pb.js';
import { TensorProto_DataLocation } from './gen/onnx_pb.js';
import { OnnxError } from './errors.js';

export interface ExternalRef {
  location: string;
  offset: number;
  /** Byte length as written in the entry; undefined when the entry leaves it out. */
  length?: number;
}

export interface ExternalFile {
  fd: number;
  size: number;
  realPath: string;
}

/** Open side files of one model, keyed by their `location` string. */
export class ExternalStore {
  readonly files = new Map<string, ExternalFile>();
  private closed = false;
  constructor(readonly dir: string) {}

  /** Validates `location` and opens it once; later calls reuse the open descriptor. */
  open(location: string): ExternalFile {
    if (this.closed) throw new OnnxError('io-error', 'model was closed; its external data can no longer be read');
    const known = this.files.get(location);
    if (known) return known;
    const file = openContained(this.dir, location);
    this.files.set(location, file);
    return file;
  }

  read(ref: ExternalRef, byteLength: number): Uint8Array {
    const file = this.open(ref.location);
    checkRange(ref, byteLength, file.size);
    const out = Buffer.allocUnsafe(byteLength);
    let done = 0;
    while (done < byteLength) {
      const n = fs.readSync(file.fd, out, done, byteLength - done, ref.offset + done);
      if (n === 0) throw new OnnxError('external-out-of-range', `external file '${ref.location}' ended early`);
      done += n;
    }
    return new Uint8Array(out.buffer, out.byteOffset, byteLength);
  }

  /** Reads `into.length` bytes of the tensor at `ref` (of `byteLength` bytes), starting `at` bytes into it. */
  readInto(ref: ExternalRef, byteLength: number, into: Uint8Array, at: number): void {
    const file = this.open(ref.location);
    checkRange(ref, byteLength, file.size);
    if (at < 0 || at + into.length > byteLength)
      throw new OnnxError(
        'invalid-argument',
        `read of [${at}, ${at + into.length}) outside a ${byteLength}-byte tensor`,
      );
    let done = 0;
    while (done < into.length) {
      const n = fs.readSync(file.fd, into, done, into.length - done, ref.offset + at + done);
      if (n === 0) throw new OnnxError('external-out-of-range', `external file '${ref.location}' ended early`);
      done += n;
    }
  }

  close(): void {
    this.closed = true;
    for (const f of this.files.values()) fs.closeSync(f.fd);
    this.files.clear();
  }
}

export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === TensorProto_DataLocation.EXTERNAL;
}

function parseNonNegative(key: string, value: string, name: string): number {
  if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw new OnnxError('external-invalid', `tensor '${name}': external_data ${key}='${value}' is not a valid integer`);
  return Number(value);
}

export function externalRef(t: TensorProto): ExternalRef {
  let location: string | undefined;
  let offset = 0;
  let length: number | undefined;
  for (const e of t.externalData) {
    if (e.key === 'location') location = e.value;
    else if (e.key === 'offset') offset = parseNonNegative('offset', e.value, t.name);
    else if (e.key === 'length') length = parseNonNegative('length', e.value, t.name);
  }
  if (location === undefined || location === '')
    throw new OnnxError('external-invalid', `tensor '${t.name}' is marked external but has no location`);
  return { location, offset, length };
}

export function checkRange(ref: ExternalRef, byteLength: number, fileSize: number): void {
  if (ref.length !== undefined && ref.length !== byteLength)
    throw new OnnxError(
      'raw-data-size-mismatch',
      `external entry in '${ref.location}' has length ${ref.length} but the tensor's dims need ${byteLength} bytes`,
    );
  if (ref.offset + byteLength > fileSize)
    throw new OnnxError(
      'external-out-of-range',
      `external data [${ref.offset}, ${ref.offset + byteLength}) lies past the end of '${ref.location}' (${fileSize} bytes)`,
    );
}

/** Rejects locations that could name anything outside `dir`, before touching the file system. */
export function checkLocationSyntax(location: string): void {
  if (location.includes('\0')) throw new OnnxError('external-invalid', 'external data location contains a NUL byte');
  if (path.posix.isAbsolute(location) || path.win32.isAbsolute(location) || /^[A-Za-z]:/.test(location))
    throw new OnnxError('external-absolute-path', `external data location '${location}' is an absolute path`);
  if (location.split(/[\\/]/).some((seg) => seg === '..'))
    throw new OnnxError('external-path-traversal', `external data location '${location}' contains '..'`);
}

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

function openContained(dir: string, location: string): ExternalFile {
  checkLocationSyntax(location);
  if (!dir)
    throw new OnnxError('external-missing', `external data '${location}' cannot be read: the model has no folder`);
  const joined = path.join(dir, location);
  let realDir: string;
  let realPath: string;
  try {
    realDir = fs.realpathSync(dir);
    realPath = fs.realpathSync(joined);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new OnnxError('external-missing', `external data file '${location}' does not exist next to the model`);
    throw new OnnxError('io-error', `cannot resolve external data '${location}': ${(e as Error).message}`);
  }
  if (!isInside(realDir, realPath))
    throw new OnnxError(
      'external-symlink-escape',
      `external data '${location}' resolves through a symlink to '${realPath}', outside the model's folder`,
    );
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO planted as "data" must not wait for a writer; regular files ignore it.
    fd = fs.openSync(realPath, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw new OnnxError('io-error', `cannot open external data '${location}': ${(e as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new OnnxError('external-not-a-file', `external data '${location}' is not a regular file`);
    if (st.nlink > 1)
      throw new OnnxError(
        'external-hard-link',
        `external data '${location}' has ${st.nlink} hard links; a hard link can expose a file from outside the model's folder`,
      );
    const again = fs.statSync(realPath);
    if (again.ino !== st.ino || again.dev !== st.dev)
      throw new OnnxError('external-symlink-escape', `external data '${location}' changed while it was being opened`);
    return { fd, size: st.size, realPath };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}
