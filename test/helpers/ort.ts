// Running models in onnxruntime-node for tests: outputs as plain float arrays keyed by name.
import * as ort from 'onnxruntime-node';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from '../../packages/engine/onnx/gen/onnx_pb.js';
import type { LoadedModel } from '../../packages/engine/onnx/model.js';

export type Feeds = Record<
  string,
  { type: 'float32' | 'int64' | 'bool'; data: Float32Array | BigInt64Array | Uint8Array | boolean[]; dims: number[] }
>;

/** Runs a model file (external data resolved next to it) or an in-memory model without external data. */
export async function runOrt(
  model: string | LoadedModel,
  feeds: Feeds,
  outputs?: string[],
): Promise<Record<string, Float32Array>> {
  const source = typeof model === 'string' ? model : toBinary(ModelProtoSchema, model.proto);
  const session = await ort.InferenceSession.create(source as string);
  try {
    const inputs: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) inputs[k] = new ort.Tensor(v.type, v.data as Float32Array, v.dims);
    const r = await session.run(inputs, outputs ?? session.outputNames);
    // Float outputs in these tests; integer outputs come back as their own typed arrays under the same key.
    const out: Record<string, Float32Array> = {};
    for (const [k, t] of Object.entries(r)) out[k] = t.data as Float32Array;
    return out;
  } finally {
    await session.release();
  }
}

export function sameArrays(a: ArrayLike<number | bigint>, b: ArrayLike<number | bigint>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}
