// A minimal WebAssembly encoder for small hand-written SIMD kernels (one exported function over an imported memory),
// so that a kernel needs no toolchain: its body is a list of opcode fragments built by the helpers here. Used by
// metrics/lse-simd.ts, metrics/fidelity-simd.ts, quant/masked-sweep.ts, math/nm-scored-simd.ts and
// math/sparsegpt-sweep-simd.ts.

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

export function sleb(v: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && !(b & 0x40)) || (v === -1 && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function f64le(x: number): number[] {
  return [...new Uint8Array(Float64Array.of(x).buffer)];
}

function i64le(v: number): number[] {
  return [...new Uint8Array(BigInt64Array.of(BigInt(v)).buffer)];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function name(s: string): number[] {
  return [...uleb(s.length), ...[...s].map((ch) => ch.charCodeAt(0))];
}

/** Concatenates opcode fragments. */
export function c(...parts: (number | number[])[]): number[] {
  return parts.flat();
}

export const I32 = 0x7f;
export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;

// Core opcodes.
export const get = (i: number) => [0x20, ...uleb(i)];
export const set = (i: number) => [0x21, ...uleb(i)];
export const tee = (i: number) => [0x22, ...uleb(i)];
export const i32c = (v: number) => [0x41, ...sleb(v)];
export const f64c = (v: number) => [0x44, ...f64le(v)];
export const BLOCK = [0x02, 0x40];
export const LOOP = [0x03, 0x40];
export const IF = [0x04, 0x40];
export const END = 0x0b;
export const br = (depth: number) => [0x0c, depth];
export const brIf = (depth: number) => [0x0d, depth];
export const I32_EQZ = 0x45;
export const I32_LT_U = 0x49;
export const I32_GE_U = 0x4f;
export const I32_ADD = 0x6a;
export const I32_SUB = 0x6b;
export const I32_MUL = 0x6c;
export const I32_SHL = 0x74;
export const I32_OR = 0x72;
export const SELECT = 0x1b;
export const F32_NE = 0x5c;
export const F32_SUB = 0x93;
export const F32_MAX = 0x97;
export const F32_GE = 0x60;
export const F32_NEG = 0x8c;
export const F32_MIN = 0x96;
export const F64_NEG = 0x9a;
export const F64_DIV = 0xa3;
export const F64_ADD = 0xa0;
export const F32_DEMOTE = 0xb6;
export const F64_PROMOTE = 0xbb;
export const F32_STORE = [0x38, 2, 0];
export const F64_STORE = [0x39, 3, 0];
export const F32_ZERO = [0x43, 0, 0, 0, 0];
export const F32_MINUS_INF = [0x43, 0, 0, 0x80, 0xff];
export const F32_EQ = 0x5b;

// SIMD opcodes.
const simd = (op: number) => [0xfd, ...uleb(op)];
const memarg = (align: number) => [...uleb(align), 0];
export const v128load = [...simd(0x00), ...memarg(4)];
/** v128.load at the address on the stack + `offset` bytes. */
export const v128loadAt = (offset: number) => [...simd(0x00), 4, ...uleb(offset)];
export const v128store = [...simd(0x0b), ...memarg(4)];
/** v128.store at the address under the value + `offset` bytes. */
export const v128storeAt = (offset: number) => [...simd(0x0b), 4, ...uleb(offset)];
/** v128.const with two f64 lanes = x. */
export const f64x2const = (x: number) => [...simd(0x0c), ...f64le(x), ...f64le(x)];
/** v128.const with two i64 lanes = v (a small non-negative integer). */
export const i64x2const = (v: number) => [...simd(0x0c), ...i64le(v), ...i64le(v)];
export const shuffle = (lanes: number[]) => [...simd(0x0d), ...lanes];
export const HIGH_HALF = [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15];
export const LOW_HALVES = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
export const V128_ZERO = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
/** v128.load32_zero / v128.store32_lane 0 at the address on the stack. */
export const load32zero = [...simd(0x5c), ...memarg(0)];
export const store32lane0 = [...simd(0x5a), ...memarg(0), 0];
export const f32x4splat = simd(0x13);
export const f64x2splat = simd(0x14);
export const f32x4extract = (lane: number) => [...simd(0x1f), lane];
export const f64x2extract = (lane: number) => [...simd(0x21), lane];
export const f32x4gt = simd(0x44);
export const f32x4ge = simd(0x46);
export const f64x2ge = simd(0x4c);
export const v128and = simd(0x4e);
export const v128bitselect = simd(0x52);
/** v128.const with four i32 lanes. */
export const i32x4const = (l: number[]) => [...simd(0x0c), ...new Uint8Array(Int32Array.from(l).buffer)];
export const v128andnot = simd(0x4f);
export const v128or = simd(0x50);
export const v128anyTrue = simd(0x53);
export const demoteF64toF32Zero = simd(0x5e);
export const promoteLowF32toF64 = simd(0x5f);
export const i32x4add = simd(0xae);
export const i32x4sub = simd(0xb1);
export const i32x4shrS = simd(0xac);
export const i32x4splat = simd(0x11);
export const i64x2shl = simd(0xcb);
export const i64x2add = simd(0xce);
export const f32x4abs = simd(0xe0);
export const f32x4mul = simd(0xe6);
export const f32x4pmin = simd(0xea);
export const f32x4pmax = simd(0xeb);
export const f32x4ne = simd(0x42);
export const f64x2pmin = simd(0xf6);
export const i16x8extendLowU8 = simd(0x89);
export const i32x4extendLowU16 = simd(0xa9);
export const f32x4convertS32 = simd(0xfa);
export const truncSatF64toI32Zero = simd(0xfc);
export const f64x2convertLowI32 = simd(0xfe);
export const i8x16narrowU16 = simd(0x66);
export const i16x8narrowU32 = simd(0x86);
export const f32x4max = simd(0xe9);
export const f64x2add = simd(0xf0);
export const f64x2sub = simd(0xf1);
export const f64x2mul = simd(0xf2);
export const f64x2pmax = simd(0xf7);
export const I32_GE_S = 0x4e;
export const I32_STORE8 = [0x3a, 0, 0];
/** v128.load64_splat at the address on the stack + `offset` bytes (an f64 into both lanes). */
export const load64splatAt = (offset: number) => [...simd(0x0a), 3, ...uleb(offset)];
export const i32x4extract = (lane: number) => [...simd(0x1b), lane];
export const i32x4eq = simd(0x37);
export const i32x4gtS = simd(0x3b);
export const f32x4eq = simd(0x41);
export const i8x16narrowS16 = simd(0x65);
export const i16x8narrowS32 = simd(0x85);

/**
 * The bytes of a module importing memory e.m and exporting one function `name` with these parameter and result types
 * and these local declarations (pairs of count, type) before `body` (which ends with the function's END).
 */
export function moduleBytes(
  fnName: string,
  params: number[],
  results: number[],
  locals: [number, number][],
  body: number[],
): Uint8Array {
  const type = section(1, [1, 0x60, ...uleb(params.length), ...params, ...uleb(results.length), ...results]);
  const imp = section(2, [1, ...name('e'), ...name('m'), 0x02, 0x00, 0x01]);
  const func = section(3, [1, 0]);
  const exp = section(7, [1, ...name(fnName), 0x00, 0]);
  const fn = [...uleb(locals.length), ...locals.flatMap(([n, t]) => [...uleb(n), t]), ...body];
  const code = section(10, [1, ...uleb(fn.length), ...fn]);
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...type, ...imp, ...func, ...exp, ...code]);
}

/** The slice of the WebAssembly API used here (the project's TypeScript libs do not declare it). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Memory: new (d: { initial: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}

/** A kernel instance: its memory and its one exported function. */
export interface WasmKernel<F> {
  memory: WasmMemory;
  fn: F;
}

/** Instantiates `bytes` (from moduleBytes) with a fresh memory; null where WebAssembly SIMD is unavailable. */
export function instantiate<F>(bytes: Uint8Array, fnName: string): WasmKernel<F> | null {
  try {
    const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
    const memory = new wasm.Memory({ initial: 1 });
    const inst = new wasm.Instance(new wasm.Module(bytes), { e: { m: memory } });
    return { memory, fn: inst.exports[fnName] as F };
  } catch {
    return null;
  }
}

/**
 * A kernel made on first use, once per thread (module state), that `use(false)` turns off for this thread (tests
 * compare a kernel with its scalar twin): `get()` is null while it is off or where WebAssembly SIMD is unavailable,
 * and the caller then runs its JavaScript.
 */
export class LazyKernel<F> {
  private kernel: WasmKernel<F> | null | undefined;
  private enabled = true;

  constructor(
    private readonly bytes: () => Uint8Array,
    private readonly fnName: string,
  ) {}

  use(on: boolean): void {
    this.enabled = on;
  }

  get(): WasmKernel<F> | null {
    if (!this.enabled) return null;
    if (this.kernel === undefined) this.kernel = instantiate<F>(this.bytes(), this.fnName);
    return this.kernel;
  }
}

/** Grows `k`'s memory to at least `bytes`; returns its buffer (a new one after growing). */
export function ensureBytes(k: WasmKernel<unknown>, bytes: number): ArrayBuffer {
  const have = k.memory.buffer.byteLength;
  if (have < bytes) k.memory.grow(Math.ceil((bytes - have) / 65536));
  return k.memory.buffer;
}

// Used by math/sparsegpt-sweep-simd.ts.
/** v128.load64_zero at the address on the stack + `offset` bytes (two floats into the low half). */
export const load64zeroAt = (offset: number) => [...simd(0x5d), 3, ...uleb(offset)];
/** v128.store64_lane `lane` at the address under the value + `offset` bytes. */
export const store64laneAt = (offset: number, lane: number) => [...simd(0x5b), 3, ...uleb(offset), lane];
/** v128.store32_lane `lane` at the address under the value + `offset` bytes (unaligned). */
export const store32laneAt = (offset: number, lane: number) => [...simd(0x5a), 0, ...uleb(offset), lane];
export const f64x2ne = simd(0x48);
export const f64x2gt = simd(0x4a);
export const f64x2div = simd(0xf3);
export const i64x2gtS = simd(0xd9);
export const i64x2splat = simd(0x12);
export const I64_EXTEND_I32_S = 0xac;
