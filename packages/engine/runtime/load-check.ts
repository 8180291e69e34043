// "Can ONNX Runtime load this model?" without paying for its weights: cycles, dangling inputs, type errors and unknown
// operators are properties of the graph, not of weight values. The check opens a skeleton of the model in which every
// large main-graph float initializer is replaced by ConstantOfShape(dims) of the same dtype — same names, element
// types and shapes for type/shape inference, no bytes to read or copy — with graph optimizations disabled so nothing
// materialises. Models the skeleton cannot express (opset < 9) are opened whole.
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  type NodeProto,
  type TensorProto,
} from '../onnx/gen/onnx_pb.js';
import { makeLoadedModel } from '../onnx/loaded.js';
import { closeModel, saveModel, type LoadedModel } from '../onnx/model.js';
import { makeTensor, tensorByteLength, tensorDims, tensorDtype } from '../onnx/tensor.js';
import { openSession, type ExecutionProvider, type OpenedSession } from './session.js';

/** Float initializers at least this large are replaced by ConstantOfShape in the skeleton. */
const SKELETON_MIN_BYTES = 64 * 1024;
const SKELETON_DTYPES = new Set(['float32', 'float16', 'float64']);

function constantOfShapeFor(t: TensorProto): { node: NodeProto; shape: TensorProto } {
  const dtype = tensorDtype(t) as 'float32' | 'float16' | 'float64';
  const dims = tensorDims(t);
  const shapeName = `${t.name}::skeleton_shape`;
  const shape = makeTensor(shapeName, 'int64', [dims.length], BigInt64Array.from(dims.map(BigInt)));
  const value = makeTensor(
    '',
    dtype,
    [1],
    dtype === 'float64' ? new Float64Array(1) : dtype === 'float16' ? new Uint16Array(1) : new Float32Array(1),
  );
  const node = create(NodeProtoSchema, {
    opType: 'ConstantOfShape',
    name: `${t.name}::skeleton`,
    input: [shapeName],
    output: [t.name],
    attribute: [create(AttributeProtoSchema, { name: 'value', type: AttributeProto_AttributeType.TENSOR, t: value })],
  });
  return { node, shape };
}

/**
 * Opens ONNX Runtime on a weight-free skeleton of `model` (written under `dir`) and releases it; throws the session
 * error when ORT refuses the graph. Returns which execution provider accepted it and the fallbacks.
 */
export async function checkLoadable(
  model: LoadedModel,
  dir: string,
  executionProviders: readonly ExecutionProvider[],
): Promise<Omit<OpenedSession, 'session'>> {
  const g = model.proto.graph!;
  const opset = Number(model.proto.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 0);
  const graphInputs = new Set(g.input.map((i) => i.name));
  const keep: TensorProto[] = [];
  const replacements: NodeProto[] = [];
  for (const t of g.initializer) {
    const replaceable =
      opset >= 9 &&
      !graphInputs.has(t.name) &&
      SKELETON_DTYPES.has(tensorDtype(t)) &&
      tensorByteLength(t) >= SKELETON_MIN_BYTES;
    if (!replaceable) {
      keep.push(t);
      continue;
    }
    const s = constantOfShapeFor(t);
    keep.push(s.shape);
    replacements.push(s.node);
  }
  const graph = create(GraphProtoSchema, { ...g, initializer: keep, node: [...replacements, ...g.node] });
  const skeleton = makeLoadedModel(create(ModelProtoSchema, { ...model.proto, graph }), model.dir);
  const path = join(dir, 'load-check.onnx');
  try {
    await saveModel(skeleton, path);
  } finally {
    closeModel(skeleton);
  }
  const opened = await openSession(path, { executionProviders, graphOptimizationLevel: 'disabled' });
  await opened.session.release();
  return { executionProvider: opened.executionProvider, fallbacks: opened.fallbacks };
}
