// Public entry of the engine's ONNX Runtime side: sessions (ONNX Runtime itself loads on first use, ort.ts) and the
// evaluation of a model against a reference. One of the engine's light entries (see ../index.ts).
export { openSession, ortVersion, SessionError, type ExecutionProvider } from './session.js';
export { evaluateModels, type EvalTask, type QualityReport } from './evaluate.js';
