// Public entry of the ONNX model layer: load/save, tensors, weight discovery, graph edits, builder, inspection,
// graph walks. One of the engine's light entries (see ../index.ts): it loads no recipe schema, method or runner.
export * from './errors.js';
export * from './model.js';
export * from './tensor.js';
export * from './weights.js';
export * from './graph.js';
export * from './builder.js';
export * from './inspect.js';
export { graphTensors, walkGraphs } from './walk.js';
