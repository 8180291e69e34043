// Inspection of uploaded files. Runs inside a worker thread (see inspect-client.ts): decoding a model protobuf or a
// dataset is CPU work that must not stall the API's event loop. Errors are the engine's typed input errors
// (OnnxError / DatasetError), recognised by name on the other side.
import {
  closeModel,
  graphTensors,
  inspectModel,
  type InspectReport,
  loadModel,
  walkGraphs,
} from '../../../packages/engine/onnx/index.js';

/** The CLI's `inspect --json` report (one summary for both), plus the external data files the model names. */
export type ModelInspection = Omit<InspectReport, 'path'> & { externalDataFiles: string[] };

export async function inspectModelFile(args: { path: string }): Promise<ModelInspection> {
  const model = await loadModel(args.path);
  try {
    const { path: _path, ...report } = inspectModel(model);
    const external = new Set<string>();
    // Every tensor that can live outside the protobuf: initializers, sparse ones, Constant attributes, subgraphs.
    walkGraphs(model.proto, (v) => {
      for (const t of graphTensors(v.graph)) {
        for (const e of t.externalData) if (e.key === 'location') external.add(e.value);
      }
    });
    return { ...report, externalDataFiles: [...external].sort() };
  } finally {
    closeModel(model);
  }
}

// Datasets are inspected by the engine's own readers (header-only for .npy). Imported through the engine's light
// entries (onnx/index.ts, data/index.ts), not packages/engine/index.ts: this thread restarts after a minute idle,
// and the full entry (the runner, every method) made its start ~3 s slower and ~45 MB larger under tsx
// (5.5-5.8 s, 135-141 MB against 2.7-3.7 s, 82-103 MB).
export { inspectDatasetFile } from '../../../packages/engine/data/index.js';
