// onnxruntime-node, loaded on first use instead of at module load. The recipe schema is built from the method files
// (methods/registry.ts imports every method), so a value import of onnxruntime-node anywhere in the engine made the
// API (`onnx-compress serve`, which only needs the schema) load ONNX Runtime's native binding at start-up: tens of
// megabytes of RSS and a few hundred milliseconds before /healthz answers (issue 15). Modules import types with
// `import type * as ort from 'onnxruntime-node'` and call `ort()` where they need a value.
import { createRequire } from 'node:module';

type Ort = typeof import('onnxruntime-node');

let loaded: Ort | undefined;

/** The onnxruntime-node module, required (it is CommonJS) and cached on the first call. */
export function ort(): Ort {
  loaded ??= createRequire(import.meta.url)('onnxruntime-node') as Ort;
  return loaded;
}
