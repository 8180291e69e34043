// The in-memory model: the decoded protobuf plus what is needed to reach tensors that live outside it.
import type { ModelProto } from './gen/onnx_pb.js';
import { ExternalStore } from './external.js';

export interface LoadedModel {
  proto: ModelProto;
  /** The file it was loaded from, if any. */
  path?: string;
  /** Folder that external-data locations are resolved against ('' when the model came from memory). */
  dir: string;
  /** @internal Open side files; read lazily by tensorBytes(). Release with closeModel(). */
  external: ExternalStore;
}

const finalizer = new FinalizationRegistry<ExternalStore>((store) => store.close());

export function makeLoadedModel(proto: ModelProto, dir: string, filePath?: string): LoadedModel {
  const external = new ExternalStore(dir);
  const model: LoadedModel = { proto, dir, external };
  if (filePath !== undefined) model.path = filePath;
  finalizer.register(model, external, model);
  return model;
}

/** Closes the side files a model holds open. The model's in-memory tensors stay usable. */
export function closeModel(model: LoadedModel): void {
  finalizer.unregister(model);
  model.external.close();
}
