// Lazy inline tensors. Reading a whole inline model into one fresh buffer costs more than anything a job then does
// with it on machines where first-touch page faults are slow (537 MB ≈ 2 s here): the loader instead walks the file's
// protobuf wire format through a small reused window, decodes a skeleton without the large TensorProto.raw_data
// payloads, and leaves each of those as a byte range of the model file, held open and checked unchanged on every
// read. A lazy tensor's `rawData` is an accessor that reads the bytes on first use and then becomes an ordinary
// field, so any code that touches `rawData` sees exactly what an eager load gives; the streaming paths (encoder,
// scanTensorBytes, readTensorBytesInto) read the range without materialising it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ModelProto, TensorProto } from './gen/onnx_pb.js';
import { OnnxError } from './errors.js';

/** raw_data payloads at least this long are left in the file. */
export const LAZY_MIN_BYTES = 64 * 1024;

/** The model file behind lazy tensors: an open descriptor plus the identity it had when the skeleton was read. */
/** Closes the descriptor of a source nobody can reach any more (its model and all its lazy tensors are gone). */
const sourceFinalizer = new FinalizationRegistry<number>((fd) => {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
});

export class LazySource {
  protected fd: number | undefined;
  private readonly stamp: string;
  constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
    this.stamp = LazySource.stampOf(fd);
    sourceFinalizer.register(this, fd, this);
  }

  /** Identity and content stamp. Not ctime: replacing the path by rename (how saveModel writes) unlinks this inode
   * and bumps its ctime, while the bytes read through the descriptor stay the same. */
  private static stampOf(fd: number): string {
    const st = fs.fstatSync(fd, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
  }

  /** Throws when the file was closed, or written to since it was loaded (its weights could have changed). */
  check(): number {
    if (this.fd === undefined)
      throw new OnnxError('io-error', `model '${this.path}' was closed; its weights can no longer be read`);
    if (LazySource.stampOf(this.fd) !== this.stamp)
      throw new OnnxError(
        'model-changed',
        `model file '${this.path}' was modified after it was loaded; load it again (its weights are read on demand)`,
      );
    return this.fd;
  }

  /** Reads `into.length` bytes from file position `pos`. */
  read(into: Uint8Array, pos: number): void {
    const fd = this.check();
    let done = 0;
    while (done < into.length) {
      const n = fs.readSync(fd, into, done, into.length - done, pos + done);
      if (n === 0)
        throw new OnnxError('model-changed', `model file '${this.path}' ended early: it was modified after loading`);
      done += n;
    }
  }

  close(): void {
    sourceFinalizer.unregister(this);
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Spilled tensors start at multiples of this (ONNX Runtime maps external data at page-aligned offsets). */
export const SPILL_ALIGNMENT = 4096;

/** A named spill file's name and the identity of the file it was created as. */
interface SpillName {
  path: string;
  adopted: boolean;
  dev: number;
  ino: number;
}

/** Whether `name.path` still leads to the file it was created as (nothing renamed another file over it). */
function stillNamed(name: SpillName): boolean {
  try {
    const st = fs.statSync(name.path);
    return st.ino === name.ino && st.dev === name.dev;
  } catch {
    return false;
  }
}

/** Removes a named spill file nobody can reach any more and that was never adopted (its descriptor is closed by
 * sourceFinalizer). */
const spillFinalizer = new FinalizationRegistry<SpillName>((name) => {
  if (!name.adopted && stillNamed(name)) fs.rmSync(name.path, { force: true });
});

/**
 * A scratch file that holds tensor bytes a method rewrote until the model is saved: pages of the kernel's file cache
 * instead of fresh process memory, which on this kind of machine costs several times more to touch than to write
 * through a file. Each tensor starts at a multiple of SPILL_ALIGNMENT (the gap is a hole that reads as zeros).
 *
 * By default it is unlinked as soon as it is opened (nothing is left behind, whatever happens). A *named* one
 * (createNamed: a hidden file in a job's output folder) stays visible so that saveModel can rename it into the
 * output's external-data file (`adopt`) instead of copying its bytes out; closing it without that removes it.
 */
export class SpillFile extends LazySource {
  private end = 0;
  private gaps = 0;
  private sealed = false;
  private readonly named: SpillName | undefined;
  private readonly scratchPath: string;

  private constructor(file: string, fd: number, named: boolean) {
    super(file, fd);
    this.scratchPath = file;
    if (named) {
      const st = fs.fstatSync(fd);
      this.named = { path: file, adopted: false, dev: st.dev, ino: st.ino };
      spillFinalizer.register(this, this.named, this);
    }
  }

  static create(dir = os.tmpdir()): SpillFile {
    const file = path.join(dir, `onnx-spill-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
    const fd = fs.openSync(file, 'wx+', 0o600);
    try {
      fs.unlinkSync(file);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return new SpillFile(file, fd, false);
  }

  /** A spill file that keeps its (hidden, temporary) name in `dir` until it is adopted or closed. */
  static createNamed(dir: string): SpillFile {
    const file = path.join(dir, `.onnx-spill-${process.pid}-${Math.random().toString(36).slice(2, 10)}.tmp`);
    const fd = fs.openSync(file, 'wx+', 0o644);
    return new SpillFile(file, fd, true);
  }

  /** Only this process writes the file: nothing to compare but whether it is still open. */
  override check(): number {
    if (this.fd === undefined) throw new OnnxError('io-error', 'the scratch file of rewritten weights was closed');
    return this.fd;
  }

  /** Bytes written so far, alignment gaps included (the file's size). */
  get size(): number {
    return this.end;
  }

  /** Bytes of alignment gaps before tensors. */
  get gapBytes(): number {
    return this.gaps;
  }

  /**
   * The file's scratch name while it can be adopted: named, open, not sealed or adopted, and the name still leads to
   * this very file (nothing replaced it).
   */
  get adoptablePath(): string | undefined {
    const named = this.named;
    if (!named || named.adopted || this.sealed || this.fd === undefined || !stillNamed(named)) return undefined;
    return named.path;
  }

  /**
   * Appends `bytes`; returns the offset they were written at. `startsTensor`: the first bytes of a tensor, written at
   * the next multiple of SPILL_ALIGNMENT (a tensor written in several chunks passes false for the later ones).
   */
  append(bytes: Uint8Array, startsTensor = true): number {
    const fd = this.check();
    if (this.sealed)
      throw new OnnxError('io-error', 'the scratch file of rewritten weights became the output; it is read-only');
    const at = startsTensor ? Math.ceil(this.end / SPILL_ALIGNMENT) * SPILL_ALIGNMENT : this.end;
    for (let done = 0; done < bytes.length;) done += fs.writeSync(fd, bytes, done, bytes.length - done, at + done);
    this.gaps += at - this.end;
    this.end = at + bytes.length;
    return at;
  }

  /** Cuts off anything written past the last append (a tail an unfinished save wrote). */
  truncateToSize(): void {
    fs.ftruncateSync(this.check(), this.end);
  }

  /** No more appends (saveModel is writing the file into an output, or has). */
  seal(): void {
    this.sealed = true;
  }

  /** Undoes seal() after an adoption that failed before the rename. */
  unseal(): void {
    if (!this.named?.adopted) this.sealed = false;
  }

  /**
   * Renames the file to `to` (its new owner's name): it is no longer removed on close, and stays sealed. Throws
   * what rename throws (EXDEV across filesystems) and leaves the file as it was.
   */
  adopt(to: string): void {
    const named = this.named;
    if (!named || named.adopted) throw new OnnxError('invalid-argument', 'this scratch file cannot be adopted');
    fs.renameSync(named.path, to);
    named.adopted = true;
    named.path = to;
    this.sealed = true;
  }

  /** Takes an adoption back (the output it became was not completed): the file gets its scratch name again. */
  unadopt(): void {
    const named = this.named;
    if (!named?.adopted) return;
    fs.renameSync(named.path, this.scratchPath);
    named.adopted = false;
    named.path = this.scratchPath;
    this.sealed = false;
  }

  override close(): void {
    const named = this.named;
    if (named) {
      spillFinalizer.unregister(this);
      if (!named.adopted && stillNamed(named)) fs.rmSync(named.path, { force: true });
    }
    super.close();
  }
}

/** Where a lazy tensor's raw_data lies in its source file. */
export interface LazyRaw {
  source: LazySource;
  offset: number;
  length: number;
}

const lazyOf = new WeakMap<TensorProto, LazyRaw>();

/** The file range of a tensor whose raw_data has not been read yet; undefined for every other tensor. */
export function lazyRawOf(t: TensorProto): LazyRaw | undefined {
  return lazyOf.get(t);
}

/** raw_data length without reading lazy bytes. */
export function rawDataLength(t: TensorProto): number {
  return lazyOf.get(t)?.length ?? t.rawData.length;
}

/** Reads `into.length` bytes of a lazy tensor's raw_data, starting `at` bytes into it. */
export function readLazyInto(raw: LazyRaw, into: Uint8Array, at: number): void {
  if (at < 0 || at + into.length > raw.length)
    throw new OnnxError('invalid-argument', `read of [${at}, ${at + into.length}) outside ${raw.length} raw bytes`);
  raw.source.read(into, raw.offset + at);
}

function setPlain(t: TensorProto, value: Uint8Array): void {
  Object.defineProperty(t, 'rawData', { value, writable: true, enumerable: true, configurable: true });
}

/**
 * Makes `t.rawData` lazy. The accessor is enumerable, so copies (spread, Object.assign, structuredClone) read the
 * bytes rather than silently dropping them; assigning `rawData` replaces the lazy bytes.
 */
export function attachLazy(t: TensorProto, raw: LazyRaw): void {
  lazyOf.set(t, raw);
  Object.defineProperty(t, 'rawData', {
    get(this: TensorProto): Uint8Array {
      const buf = new Uint8Array(raw.length);
      readLazyInto(raw, buf, 0);
      lazyOf.delete(this);
      setPlain(this, buf);
      return buf;
    },
    set(this: TensorProto, value: Uint8Array) {
      lazyOf.delete(this);
      setPlain(this, value);
    },
    enumerable: true,
    configurable: true,
  });
}

// ---- the wire-format walker ----

/** Field number of the placeholder the skeleton carries instead of a lazy raw_data (the largest legal number). */
const MARKER_FIELD = 2 ** 29 - 1;
/** Deeper than the decoder's own limit (3 × 64 + 16 messages): such files take the eager path and its error. */
const MAX_DEPTH = 3 * 64 + 16;

type Kind = 'model' | 'graph' | 'node' | 'attr' | 'tensor' | 'sparse' | 'training' | 'function';

/** Length-delimited fields that hold messages which can (transitively) hold a TensorProto, per message kind. */
const CHILDREN: Record<Kind, Partial<Record<number, Kind>>> = {
  model: { 7: 'graph', 20: 'training', 25: 'function' },
  graph: { 1: 'node', 5: 'tensor', 15: 'sparse' },
  node: { 5: 'attr' },
  attr: { 5: 'tensor', 6: 'graph', 10: 'tensor', 11: 'graph', 22: 'sparse', 23: 'sparse' },
  training: { 1: 'graph', 2: 'graph' },
  function: { 7: 'node' },
  sparse: { 1: 'tensor', 2: 'tensor' },
  tensor: {},
};

/** Anything the walker does not fully understand: the loader then reads the file eagerly (same errors as before). */
class Unsupported extends Error {}

/** Byte access to a file through one reused window, refilled with pread wherever the walk goes. */
class Window {
  private start = 0;
  private end = 0;
  constructor(
    private readonly fd: number,
    readonly size: number,
    private readonly buf: Uint8Array,
  ) {}

  byte(pos: number): number {
    if (pos < this.start || pos >= this.end) {
      if (pos >= this.size) throw new Unsupported('past the end');
      const n = fs.readSync(this.fd, this.buf, 0, Math.min(this.buf.length, this.size - pos), pos);
      if (n <= 0) throw new Unsupported('short read');
      this.start = pos;
      this.end = pos + n;
    }
    return this.buf[pos - this.start];
  }

  /** [value, next position]; values past 2^53 are not lengths or tags this walker needs. */
  varint(pos: number): [number, number] {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte(pos + i);
      v += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (v > Number.MAX_SAFE_INTEGER) throw new Unsupported('varint too large');
        return [v, pos + i + 1];
      }
      mul *= 128;
    }
    throw new Unsupported('bad varint');
  }

  /**
   * The position after the varint at `pos`, whatever its value: a field value (wire type 0) may be any 64-bit
   * pattern — a negative int64 such as axis = -1 takes ten bytes and is far past 2^53 — and is only skipped here.
   */
  skipVarint(pos: number): number {
    for (let i = 0; i < 10; i++) if (this.byte(pos + i) < 0x80) return pos + i + 1;
    throw new Unsupported('bad varint');
  }
}

function varintBytes(v: number, out: number[]): void {
  while (v > 127) {
    out.push((v % 128) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

/** A piece of the skeleton: a file range copied as is, or new bytes (rewritten headers, markers). */
type Part = { from: number; to: number } | Uint8Array;

interface Walked {
  parts: Part[];
  size: number;
}

class Walker {
  readonly ranges: { offset: number; length: number }[] = [];
  constructor(
    private readonly w: Window,
    private readonly minBytes: number,
  ) {}

  /** The skeleton of the message of `kind` in [start, end), or undefined when nothing in it is left lazy. */
  message(kind: Kind, start: number, end: number, depth: number): Walked | undefined {
    if (depth > MAX_DEPTH) throw new Unsupported('too deep');
    const children = CHILDREN[kind];
    const parts: Part[] = [];
    let size = 0;
    let copyFrom = start;
    let rawFields = 0;
    const lazyBefore = this.ranges.length;
    const emit = (p: Part) => {
      parts.push(p);
      size += p instanceof Uint8Array ? p.length : p.to - p.from;
    };
    let pos = start;
    while (pos < end) {
      const fieldStart = pos;
      const [tag, afterTag] = this.w.varint(pos);
      const no = Math.floor(tag / 8);
      const wire = tag % 8;
      if (no === 0) throw new Unsupported('field 0');
      if (kind === 'tensor' && no === MARKER_FIELD) throw new Unsupported('marker field present');
      if (wire === 0) pos = this.w.skipVarint(afterTag);
      else if (wire === 1) pos = afterTag + 8;
      else if (wire === 5) pos = afterTag + 4;
      else if (wire === 2) {
        const [len, body] = this.w.varint(afterTag);
        pos = body + len;
        if (pos > end) throw new Unsupported('length past the end of the message');
        if (kind === 'tensor' && no === 9) {
          rawFields++;
          if (len >= this.minBytes) {
            if (copyFrom < fieldStart) emit({ from: copyFrom, to: fieldStart });
            const marker: number[] = [];
            varintBytes(MARKER_FIELD * 8, marker);
            varintBytes(this.ranges.length, marker);
            emit(new Uint8Array(marker));
            this.ranges.push({ offset: body, length: len });
            copyFrom = pos;
          }
        } else {
          const child = children[no];
          const sub = child ? this.message(child, body, pos, depth + 1) : undefined;
          if (sub) {
            if (copyFrom < fieldStart) emit({ from: copyFrom, to: fieldStart });
            const header: number[] = [];
            varintBytes(tag, header);
            varintBytes(sub.size, header);
            emit(new Uint8Array(header));
            for (const p of sub.parts) emit(p);
            copyFrom = pos;
          }
        }
      } else throw new Unsupported(`wire type ${wire}`);
      if (pos > end) throw new Unsupported('field past the end of the message');
    }
    if (this.ranges.length === lazyBefore) return undefined;
    // Several raw_data fields in one tensor (the last one wins when decoding): not worth keeping lazy.
    if (rawFields > 1) throw new Unsupported('repeated raw_data');
    if (copyFrom < end) emit({ from: copyFrom, to: end });
    return { parts, size };
  }
}

export interface LazySkeleton {
  /** The model's bytes with every large raw_data replaced by a placeholder. */
  bytes: Uint8Array;
  /** File ranges of the left-out payloads, indexed by placeholder. */
  ranges: { offset: number; length: number }[];
}

/**
 * Walks the model file open at `fd` (`size` bytes) and builds its skeleton. Undefined when no raw_data is large
 * enough to leave out, or the file is anything but well-formed (the eager path then decodes it and reports why).
 */
export function readSkeleton(fd: number, size: number, minBytes = LAZY_MIN_BYTES): LazySkeleton | undefined {
  const window = new Window(fd, size, new Uint8Array(Math.min(size, 256 * 1024)));
  const walker = new Walker(window, minBytes);
  let walked: Walked | undefined;
  try {
    walked = walker.message('model', 0, size, 0);
  } catch (e) {
    if (e instanceof Unsupported) return undefined;
    throw e;
  }
  if (!walked) return undefined;
  const bytes = new Uint8Array(walked.size);
  let at = 0;
  for (const p of walked.parts) {
    if (p instanceof Uint8Array) {
      bytes.set(p, at);
      at += p.length;
      continue;
    }
    for (let done = 0; done < p.to - p.from;) {
      const n = fs.readSync(fd, bytes, at + done, p.to - p.from - done, p.from + done);
      if (n <= 0) return undefined;
      done += n;
    }
    at += p.to - p.from;
  }
  return { bytes, ranges: walker.ranges };
}

/** Every TensorProto in a decoded model, wherever it sits (graphs, nodes, attributes, functions, training). */
function forEachTensor(proto: ModelProto, visit: (t: TensorProto) => void): void {
  type Msg = Record<string, unknown>;
  const FIELDS: Record<Kind, [string, Kind][]> = {
    model: [
      ['graph', 'graph'],
      ['trainingInfo', 'training'],
      ['functions', 'function'],
    ],
    graph: [
      ['node', 'node'],
      ['initializer', 'tensor'],
      ['sparseInitializer', 'sparse'],
    ],
    node: [['attribute', 'attr']],
    attr: [
      ['t', 'tensor'],
      ['g', 'graph'],
      ['tensors', 'tensor'],
      ['graphs', 'graph'],
      ['sparseTensor', 'sparse'],
      ['sparseTensors', 'sparse'],
    ],
    training: [
      ['initialization', 'graph'],
      ['algorithm', 'graph'],
    ],
    function: [['node', 'node']],
    sparse: [
      ['values', 'tensor'],
      ['indices', 'tensor'],
    ],
    tensor: [],
  };
  const stack: [Msg, Kind][] = [[proto as unknown as Msg, 'model']];
  while (stack.length) {
    const [msg, kind] = stack.pop()!;
    if (kind === 'tensor') {
      visit(msg as unknown as TensorProto);
      continue;
    }
    for (const [field, child] of FIELDS[kind]) {
      const v = msg[field];
      if (Array.isArray(v)) for (const x of v) stack.push([x as Msg, child]);
      else if (v && typeof v === 'object') stack.push([v as Msg, child]);
    }
  }
}

/**
 * Replaces the skeleton's placeholders in a decoded model with lazy raw_data from `source`. Returns false (and
 * leaves the caller to load eagerly) when the placeholders do not map one to one onto tensors.
 */
export function attachSkeletonRanges(
  proto: ModelProto,
  ranges: { offset: number; length: number }[],
  source: LazySource,
): boolean {
  const found: [TensorProto, number][] = [];
  let ok = true;
  forEachTensor(proto, (t) => {
    const unknown = t.$unknown;
    if (!unknown) return;
    const markers = unknown.filter((u) => u.no === MARKER_FIELD);
    if (markers.length === 0) return;
    if (markers.length > 1 || t.rawData.length > 0) ok = false;
    const data = markers[0].data;
    let index = 0;
    let mul = 1;
    for (const b of data) {
      index += (b & 0x7f) * mul;
      mul *= 128;
    }
    found.push([t, index]);
  });
  const seen = new Set(found.map(([, i]) => i));
  if (!ok || found.length !== ranges.length || seen.size !== ranges.length) return false;
  if (found.some(([, i]) => !(i < ranges.length))) return false;
  for (const [t, index] of found) {
    const rest = t.$unknown!.filter((u) => u.no !== MARKER_FIELD);
    if (rest.length) t.$unknown = rest;
    else delete (t as { $unknown?: unknown }).$unknown;
    const r = ranges[index];
    attachLazy(t, { source, offset: r.offset, length: r.length });
  }
  return true;
}
