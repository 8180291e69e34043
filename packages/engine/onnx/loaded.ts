// The in-memory model: the decoded protobuf plus what is needed to reach tensors that live outside it.
import type { ModelProto } from './gen/onnx_pb.js';
import { ExternalStore } from './external.js';
import type { LazySource, SpillFile } from './lazy.js';

export interface LoadedModel {
  proto: ModelProto;
  /** The file it was loaded from, if any. */
  path?: string;
  /** Folder that external-data locations are resolved against ('' when the model came from memory). */
  dir: string;
  /** @internal Open side files; read lazily by tensorBytes(). Release with closeModel(). */
  external: ExternalStore;
  /** @internal The model file itself while large inline tensors are still read on demand (onnx/lazy.ts). */
  source?: LazySource;
  /** @internal Scratch file of tensor bytes rewritten by methods, kept until the model is saved (onnx/lazy.ts). */
  spill?: SpillFile;
  /**
   * @internal Where the spill file is created, as a named hidden file that saveModel's `adoptSpill` can turn into the
   * output's external data (the runner passes the job's output folder). Unset: an unlinked file in os.tmpdir().
   */
  spillDir?: string;
}

const finalizer = new FinalizationRegistry<ExternalStore>((store) => store.close());

export function makeLoadedModel(proto: ModelProto, dir: string, filePath?: string, source?: LazySource): LoadedModel {
  const external = new ExternalStore(dir);
  const model: LoadedModel = { proto, dir, external };
  if (filePath !== undefined) model.path = filePath;
  if (source) model.source = source;
  finalizer.register(model, external, model);
  return model;
}

/**
 * Closes the files a model holds open (side files, and the model file behind lazily read tensors). Tensors already
 * in memory stay usable; reading one that was still on disk fails with a clear 'io-error'.
 */
export function closeModel(model: LoadedModel): void {
  finalizer.unregister(model);
  model.external.close();
  model.source?.close();
  model.spill?.close();
}

/**
 * Moves `source` into `target` (same object identity for the caller, e.g. a method that must hand back its context's
 * model but built the answer on a fresh load): target's own files are closed first, source must not be used after.
 */
export function adoptModel(target: LoadedModel, source: LoadedModel): void {
  closeModel(target);
  finalizer.unregister(source);
  target.proto = source.proto;
  target.dir = source.dir;
  target.external = source.external;
  if (source.path !== undefined) target.path = source.path;
  else delete target.path;
  if (source.source) target.source = source.source;
  else delete target.source;
  if (source.spill) target.spill = source.spill;
  else delete target.spill;
  finalizer.register(target, target.external, target);
}
