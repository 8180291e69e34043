// The ONNX model layer: load/save, tensors, weight discovery, graph edits, builder, inspection.
export * from './errors.js';
export * from './model.js';
export * from './tensor.js';
export * from './weights.js';
export * from './graph.js';
export * from './builder.js';
export * from './inspect.js';
