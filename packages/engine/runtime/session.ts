// ONNX Runtime sessions for the engine: execution-provider choice with fallback (onnxruntime-node throws when an
// EP such as CUDA is missing instead of falling back, so each is tried in order and the one that worked recorded),
// and conversions between dataset arrays / ORT tensors / float32.
// session.run is synchronous native work: callers run the engine in a worker thread, never on an API event loop.
import type * as ort from 'onnxruntime-node';
import { ort as loadOrt } from './ort.js';
import { DTYPE_BYTES, type DataArray } from '../data/types.js';
import { float16ToFloat32 } from '../onnx/floats.js';

export type ExecutionProvider = 'cuda' | 'cpu';

export interface OpenedSession {
  session: ort.InferenceSession;
  executionProvider: ExecutionProvider;
  /** Why earlier providers in the list were not used (e.g. "cuda: CUDA EP not available in this build"). */
  fallbacks: string[];
}

export interface SessionOptions {
  /** Tried in order. @defaultValue ['cpu'] */
  executionProviders?: readonly ExecutionProvider[];
  /** @defaultValue 'all' */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  intraOpNumThreads?: number;
  /**
   * Whether idle intra-op pool threads spin. Timing runs turn it off: on a small shared machine a spinning pool takes
   * cores from everything else and inflates the slower (dense) model's time most, overstating speed-ups.
   * @defaultValue ONNX Runtime's default (spinning on)
   */
  allowSpinning?: boolean;
  /**
   * Folder that external-data locations of a model given as bytes resolve against (ONNX Runtime's
   * `session.model_external_initializers_file_folder_path`); ONNX Runtime checks that every location stays inside it.
   * @defaultValue none (a model given as bytes has no external data)
   */
  externalDataFolder?: string;
  /** ONNX Runtime's CPU memory arena. @defaultValue true */
  cpuMemArena?: boolean;
  /** ONNX Runtime's memory pattern (one planned block for a run's intermediates). @defaultValue true */
  memPattern?: boolean;
  /**
   * Whether the CPU EP copies constant MatMul/Gemm weights into its packed GEMM layout when the session opens
   * (`session.disable_prepacking` when false). runtime/open-model.ts turns it off for sessions that run a few batches
   * over float weights, where the copy costs more than it saves. @defaultValue true
   */
  prepack?: boolean;
}

/** ONNX Runtime's version, as reported by the binding. */
export function ortVersion(): string {
  return loadOrt().env.versions?.node ?? loadOrt().env.versions?.common ?? 'unknown';
}

/** Opens a session on a model file (external data resolves next to it) or serialized bytes. */
export async function openSession(model: string | Uint8Array, opts: SessionOptions = {}): Promise<OpenedSession> {
  const providers = opts.executionProviders?.length ? opts.executionProviders : (['cpu'] as const);
  const fallbacks: string[] = [];
  let lastError: unknown;
  for (const ep of providers) {
    const so = ortSessionOptions(ep, opts, typeof model !== 'string');
    try {
      const session =
        typeof model === 'string'
          ? await loadOrt().InferenceSession.create(model, so)
          : await loadOrt().InferenceSession.create(model, so);
      return { session, executionProvider: ep, fallbacks };
    } catch (e) {
      lastError = e;
      fallbacks.push(`${ep}: ${firstLine((e as Error).message ?? String(e))}`);
    }
  }
  throw new SessionError(
    `ONNX Runtime could not open the model with ${providers.join(', ')}: ${fallbacks.join('; ')}`,
    lastError,
  );
}

/** ONNX Runtime's options for one provider's attempt (`bytes`: the model is given as bytes, not a path). */
export function ortSessionOptions(
  ep: ExecutionProvider,
  opts: SessionOptions,
  bytes: boolean,
): ort.InferenceSession.SessionOptions {
  const so: ort.InferenceSession.SessionOptions = {
    executionProviders: [ep],
    graphOptimizationLevel: opts.graphOptimizationLevel ?? 'all',
    logSeverityLevel: 3,
  };
  if (opts.cpuMemArena === false) so.enableCpuMemArena = false;
  if (opts.memPattern === false) so.enableMemPattern = false;
  if (opts.intraOpNumThreads !== undefined) so.intraOpNumThreads = opts.intraOpNumThreads;
  const config: Record<string, unknown> = {};
  if (opts.allowSpinning === false) config.intra_op = { allow_spinning: '0' };
  if (opts.prepack === false) config.disable_prepacking = '1';
  if (opts.externalDataFolder !== undefined && bytes) {
    config.model_external_initializers_file_folder_path = opts.externalDataFolder;
  }
  if (Object.keys(config).length) so.extra = { session: config };
  return so;
}

/** ONNX Runtime refused the model or a run failed: usually a bad model, so reported as input error. */
export class SessionError extends Error {
  override readonly name = 'InputError';
  readonly code = 'onnxruntime-error';
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
  }
}

function firstLine(s: string): string {
  const line = s.split('\n')[0];
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** Dataset array → ORT tensor (no copy). */
export function toOrtTensor(a: DataArray): ort.Tensor {
  switch (a.dtype) {
    case 'float16':
      return new (loadOrt().Tensor)('float16', a.data as Uint16Array, a.dims);
    case 'bool':
      return new (loadOrt().Tensor)('bool', a.data as Uint8Array, a.dims);
    default:
      return new (loadOrt().Tensor)(a.dtype, a.data as Float32Array, a.dims);
  }
}

export function feedsOf(inputs: Map<string, DataArray>): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [k, a] of inputs) feeds[k] = toOrtTensor(a);
  return feeds;
}

/** Float view of a numeric ORT tensor or dataset array (float32 data is returned as is, others converted). */
export function toFloat32(t: { type?: string; dtype?: string; data: unknown }): Float32Array {
  const type = t.type ?? t.dtype;
  const d = t.data;
  if (d instanceof Float32Array) return d;
  if (type === 'float16' && d instanceof Uint16Array) return float16ToFloat32(d);
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) return Float32Array.from(d, (v) => Number(v));
  if (ArrayBuffer.isView(d)) return Float32Array.from(d as unknown as ArrayLike<number>);
  throw new SessionError(`tensor of type ${type} cannot be read as numbers`);
}

/**
 * Runs a session, turning ORT's untyped failures into SessionErrors that say which run failed. `fetches` is a list of
 * output names, or names mapped to null or to a tensor ORT writes that output into (pre-allocated).
 */
export async function runSession(
  session: ort.InferenceSession,
  feeds: Record<string, ort.Tensor>,
  fetches: string[] | Record<string, ort.Tensor | null>,
  what: string,
): Promise<ort.InferenceSession.ReturnType> {
  try {
    return await session.run(feeds, fetches);
  } catch (e) {
    throw new SessionError(`ONNX Runtime failed while ${what}: ${firstLine((e as Error).message ?? String(e))}`, e);
  }
}

/** Bytes a dataset array occupies. */
export function arrayBytes(a: DataArray): number {
  return a.data.length * DTYPE_BYTES[a.dtype];
}
