// Sessions on models whose weights are large, opened so that ONNX Runtime holds one copy of them and nothing else
// does. Given the path of an inline model, ONNX Runtime reads the whole file into a protobuf and builds its own
// tensors from it (about 1.6 × the file at once, measured on a 423 MB model); given weights in external data at
// page-aligned offsets it maps them instead, and after prepacking the MatMul weights into its own layout it unmaps
// them (1 × the weights, no transient copy). So the model handed to ONNX Runtime is an in-memory skeleton whose
// weights are external-data references to the page-aligned ranges they already occupy (the model's side files); the
// rest — inline weights in an .onnx file, weights rewritten in memory or in the spill file — is copied in when small.
// Past that, weights that lie in the model's own files at unaligned offsets (an inline .onnx, such as a compressed
// output below 1.8 GiB) are still referenced where they are: ONNX Runtime reads those ranges into its buffers instead
// of mapping them (same peak as mapping a copy, measured on the 423 MB 2:4 output: 551 vs 559 MiB; 3.4 s instead of
// 5.2 s to open, no scratch copy written). Only weights held in memory or in the spill file over the cap send the
// model to the scratch folder with aligned external data, opened from there, and the files unlinked at once (the
// maps keep what ONNX Runtime still uses).
// Prepacking: the CPU EP copies every constant MatMul weight into its GEMM layout when a session opens — a fresh copy
// of the weights, paged in (1 B LLM: 15.4 s to open, about 1.4 dense forward passes of 8 × 128 tokens) — and each run
// is then ~9 % faster on float weights (11.2 vs 12.2 s per pass). A session that runs at most PREPACK_MIN_RUNS batches
// (a calibration pass, an evaluation) opens float models without it (0.09 s). Quantized kernels (MatMulNBits, …) keep
// it: unpacked they run 2–3 × slower (250M 4-bit model, 8 × 128 tokens: 3.1 → 4.1–4.6 s per run) and open little
// faster.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { closeModel, loadModel, modelBytesReferencing, saveModel, type LoadedModel } from '../onnx/model.js';
import { allNodeLists } from '../onnx/walk.js';
import { openSession, type OpenedSession, type SessionOptions } from './session.js';

/** Bytes of weights that may be copied into the in-memory skeleton before the model goes through a scratch file. */
const MAX_COPIED_BYTES = 64 * 1024 * 1024;
/** ONNX Runtime maps external data only at multiples of the allocation granularity (64 KiB on Windows, else a page). */
const MAP_ALIGNMENT = process.platform === 'win32' ? 65536 : 4096;

/**
 * Sessions that run at most this many batches skip prepacking on float models: measured break-even 8 runs of 8 × 128
 * tokens on the 245 M LLM (open 2.6 s vs +0.3 s per run), 15 on the 1 B (15.4 s vs +1.0 s), 25 at 1 × 128 tokens.
 */
export const PREPACK_MIN_RUNS = 8;

/** Operators whose CPU kernels prepack quantized weights and are much slower without (file comment). */
const PREPACKED_QUANTIZED_OPS = new Set([
  'MatMulNBits',
  'MatMulInteger',
  'MatMulIntegerToFloat',
  'DynamicQuantizeMatMul',
  'QLinearMatMul',
  'QLinearConv',
  'QGemm',
  'QAttention',
  'ConvInteger',
]);

/** Options of a session on a loaded model: `runs` is how many runs the caller will make, if it knows. */
export type LoadedSessionOptions = SessionOptions & { runs?: number };

/**
 * Whether ONNX Runtime should prepack `model`'s weights for a session that runs `runs` times (file comment): an
 * explicit `prepack` wins; unknown run counts keep ONNX Runtime's default.
 */
export function prepackFor(model: Pick<LoadedModel, 'proto'>, opts: LoadedSessionOptions): boolean {
  if (opts.prepack !== undefined) return opts.prepack;
  if (opts.runs === undefined || opts.runs > PREPACK_MIN_RUNS) return true;
  let quantized = false;
  allNodeLists(model.proto, (nodes) => {
    quantized ||= nodes.some((n) => PREPACKED_QUANTIZED_OPS.has(n.opType));
  });
  return quantized;
}

/** The options for a model ONNX Runtime gets without a graph to decide prepacking from: its default. */
export function withoutRuns({ runs: _runs, ...opts }: LoadedSessionOptions): SessionOptions {
  return opts;
}

let scratchFiles = 0;

/** Opens a session on `model` as it stands (see the file comment); the caller's model is not changed. */
export async function openLoadedModel(
  model: LoadedModel,
  scratchDir: string,
  { runs, ...session }: LoadedSessionOptions = {},
  maxCopiedBytes = MAX_COPIED_BYTES,
): Promise<OpenedSession & { via: 'references' | 'scratch-file' }> {
  const opts: SessionOptions = { ...session, prepack: prepackFor(model, { ...session, runs }) };
  const bytes = model.dir
    ? (modelBytesReferencing(model, model.dir, maxCopiedBytes, MAP_ALIGNMENT) ??
      modelBytesReferencing(model, model.dir, maxCopiedBytes, 1))
    : undefined;
  if (bytes) return { ...(await openSession(bytes, { ...opts, externalDataFolder: model.dir })), via: 'references' };
  const file = join(scratchDir, `session-${process.pid}-${++scratchFiles}.onnx`);
  try {
    await saveModel(model, file, { externalData: true });
    return { ...(await openSession(file, opts)), via: 'scratch-file' };
  } finally {
    // ONNX Runtime has read or mapped every weight by now; an unlinked file stays readable through its maps.
    await rm(file, { force: true }).catch(() => {});
    await rm(`${file}.data`, { force: true }).catch(() => {});
  }
}

/**
 * Opens a session on a model file the same way (its skeleton is read lazily, onnx/lazy.ts). A file the engine's
 * loader refuses goes to ONNX Runtime by path, which gives its own verdict.
 */
export async function openModelFile(
  file: string,
  scratchDir: string,
  opts: LoadedSessionOptions = {},
  maxCopiedBytes = MAX_COPIED_BYTES,
): Promise<OpenedSession & { via: 'references' | 'scratch-file' | 'path' }> {
  let model: LoadedModel;
  try {
    model = await loadModel(file);
  } catch {
    return { ...(await openSession(file, withoutRuns(opts))), via: 'path' };
  }
  try {
    return await openLoadedModel(model, scratchDir, opts, maxCopiedBytes);
  } finally {
    closeModel(model);
  }
}
