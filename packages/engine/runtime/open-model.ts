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
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { closeModel, loadModel, modelBytesReferencing, saveModel, type LoadedModel } from '../onnx/model.js';
import { openSession, type OpenedSession, type SessionOptions } from './session.js';

/** Bytes of weights that may be copied into the in-memory skeleton before the model goes through a scratch file. */
const MAX_COPIED_BYTES = 64 * 1024 * 1024;
/** ONNX Runtime maps external data only at multiples of the allocation granularity (64 KiB on Windows, else a page). */
const MAP_ALIGNMENT = process.platform === 'win32' ? 65536 : 4096;

let scratchFiles = 0;

/** Opens a session on `model` as it stands (see the file comment); the caller's model is not changed. */
export async function openLoadedModel(
  model: LoadedModel,
  scratchDir: string,
  opts: SessionOptions = {},
  maxCopiedBytes = MAX_COPIED_BYTES,
): Promise<OpenedSession & { via: 'references' | 'scratch-file' }> {
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
  opts: SessionOptions = {},
  maxCopiedBytes = MAX_COPIED_BYTES,
): Promise<OpenedSession & { via: 'references' | 'scratch-file' | 'path' }> {
  let model: LoadedModel;
  try {
    model = await loadModel(file);
  } catch {
    return { ...(await openSession(file, opts)), via: 'path' };
  }
  try {
    return await openLoadedModel(model, scratchDir, opts, maxCopiedBytes);
  } finally {
    closeModel(model);
  }
}
