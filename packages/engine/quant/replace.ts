// Graph surgery for a quantized layer: the consumer node (MatMul/Gemm/Conv) of a discovered weight is replaced in
// place by MatMulNBits, or its weight input is fed by a DequantizeLinear (QDQ), optionally followed by a low-rank
// adapter branch Y = Y_C + (X·A)·B. The new nodes take the consumer's position in its graph (so the order stays
// topological), the final value keeps the consumer's output name (nothing downstream is rewired), and the old
// weight (its store and any Identity/Cast/Transpose/Reshape chain) is removed once nothing reads it.
import type { AttributeProto, GraphProto, NodeProto, TensorProto } from '../onnx/gen/onnx_pb.js';
import { TensorProto_DataType } from '../onnx/gen/onnx_pb.js';
import {
  addInitializer,
  ensureOpset,
  findNode,
  removeInitializerIfUnused,
  uniqueName,
  usedNames,
  valueElemType,
  type FoundNode,
} from '../onnx/graph.js';
import type { LoadedModel } from '../onnx/model.js';
import type { WeightRef } from '../onnx/weights.js';
import { walkGraphs } from '../onnx/walk.js';
import { packMatMulNBits, type MatMulNBitsWeights } from './matmulnbits.js';
import {
  adapterNodes,
  matMulNBitsNode,
  MS_DOMAIN,
  node,
  qdqWeight,
  type FloatDtype,
  type WeightLayout,
} from './onnx-nodes.js';
import { QuantError, type QuantizedMatrix } from './types.js';

/** ONNX IR version that introduced int4/uint4 (and opset 21); ORT 1.29 reads IR ≤ 13. */
const IR_INT4 = 10n;

export type Format = 'matmulnbits' | 'qdq';

export interface LayerAdapter {
  rank: number;
  /** [K][r] */
  a: Float32Array;
  /** [r][N] */
  b: Float32Array;
  /** SLiM-LoRA^Q: canonical Aᵀ [r][K] and Bᵀ [N][r], quantized. */
  quantized?: { a: QuantizedMatrix; b: QuantizedMatrix };
  /** Storage of unquantized factors (float16 + Cast under float32 activations). @defaultValue activation dtype */
  storage?: FloatDtype;
}

export interface ReplaceOptions {
  format: Format;
  /** MatMulNBits accuracy_level (ignored for QDQ). */
  accuracyLevel: number;
  adapter?: LayerAdapter;
  /** Already-packed MatMulNBits weights for `q` (the fused fast path); q may then be null. */
  packed?: MatMulNBitsWeights;
}

export interface ReplaceResult {
  /** What was written: 'MatMulNBits' | 'DequantizeLinear+MatMul' | … (+ ' + adapter'). */
  route: string;
  /** Bytes of the new initializers (codes, scales, zero points, adapters). */
  bytes: number;
  /** Of which the adapter's. */
  adapterBytes: number;
  dtype: FloatDtype;
  /** The MatMulNBits nodes written (their accuracy_level can be set afterwards, see setAccuracyLevel). */
  nbitsNodes: NodeProto[];
  /** The DequantizeLinear nodes written (QDQ route: the weight's first; packed24-nbits packs its int4 input). */
  dqNodes: NodeProto[];
}

/** Why this weight cannot be rewritten as asked (undefined when it can). */
export function replaceBlocker(
  model: LoadedModel,
  w: WeightRef,
  format: Format,
  /** Default-domain opset the DequantizeLinear route would need (21 for int4 or blocks, 13 int8 per-channel). */
  qdqOpset = 21,
  /** One group per output row: ORT's contrib DequantizeLinear can then stand in when the opset cannot be raised. */
  perChannel = false,
): string | undefined {
  return inspectConsumer(model, w, format, qdqOpset, perChannel).blocker;
}

interface ConsumerCheck {
  blocker?: string;
  found?: FoundNode;
  /** The activation's dtype, when the check had to resolve it (resolving walks the whole model). */
  dtype?: { value: FloatDtype | undefined };
}

/** replaceBlocker, keeping the consumer and activation dtype it looked up so a replacement need not redo them. */
function inspectConsumer(
  model: LoadedModel,
  w: WeightRef,
  format: Format,
  qdqOpset: number,
  perChannel: boolean,
): ConsumerCheck {
  if ((format === 'qdq' || w.op === 'Conv') && !perChannel) {
    try {
      checkOpset(model, qdqOpset);
    } catch (e) {
      return {
        blocker:
          `DequantizeLinear with block-wise scales needs opset ${qdqOpset}: ${(e as Error).message} ` +
          '(groupSize "channel" works at any opset through com.microsoft DequantizeLinear)',
      };
    }
  }
  const found = findNode(model, w.node, w.graphPath);
  if (!found) return { blocker: `consumer node '${w.node}' not found` };
  const n = found.node;
  if (w.op === 'Gemm') {
    const attr = (name: string, d: number) => {
      const a = n.attribute.find((x) => x.name === name);
      return a ? (a.type === 1 ? a.f : Number(a.i)) : d;
    };
    const gemm =
      attr('transA', 0) !== 0
        ? 'Gemm with transA=1'
        : attr('alpha', 1) !== 1
          ? 'Gemm with alpha ≠ 1'
          : n.input[2] && attr('beta', 1) !== 1
            ? 'Gemm with a bias scaled by beta ≠ 1'
            : undefined;
    if (gemm) return { blocker: gemm, found };
  }
  if (w.op === 'Conv' && format === 'matmulnbits') return { found }; // Conv goes QDQ; checked there
  const dtype = { value: activationDtype(model, w) };
  return { blocker: dtype.value ? undefined : 'activation is neither float32 nor float16', found, dtype };
}

function activationDtype(model: LoadedModel, w: WeightRef): FloatDtype | undefined {
  const t = w.activation ? valueElemType(model, w.activation) : undefined;
  if (t === TensorProto_DataType.FLOAT16) return 'float16';
  if (t === TensorProto_DataType.FLOAT) return 'float32';
  if (t === undefined) return w.dtype === 'float16' ? 'float16' : w.dtype === 'float32' ? 'float32' : undefined;
  return undefined;
}

function tensorBytes(ts: TensorProto[]): number {
  return ts.reduce((s, t) => s + (t.rawData?.length ?? 0), 0);
}

/** Removes the now-unread chain (Identity/Cast/Transpose/Reshape…) ending in `value`, then the stored weight. */
function removeDeadWeight(model: LoadedModel, graph: GraphProto, value: string, store: string): void {
  let cur = value;
  for (let guard = 0; guard < 64 && cur !== store; guard++) {
    if (isRead(model, cur)) return;
    const i = graph.node.findIndex((x) => x.output.length === 1 && x.output[0] === cur);
    if (i < 0) break;
    const producer = graph.node[i];
    if (producer.opType === 'Constant') break;
    graph.node.splice(i, 1);
    cur = producer.input[0];
  }
  removeInitializerIfUnused(model, store);
}

function isRead(model: LoadedModel, name: string): boolean {
  let read = false;
  walkGraphs(model.proto, (v) => {
    if (read) return;
    if (v.graph.output.some((o) => o.name === name)) read = true;
    for (const n of v.graph.node) if (n.input.includes(name)) read = true;
  });
  return read;
}

function layoutOf(w: WeightRef): WeightLayout {
  if (w.op === 'Conv') {
    const c = w.consumerShape;
    if (c.length < 3) throw new QuantError(`QDQ for Conv needs a weight [O][C][k…] (got rank ${c.length})`);
    return { kind: 'conv', dims: [...c] };
  }
  return w.op === 'Gemm' && w.transB ? { kind: 'nk' } : { kind: 'kn' };
}

function bumpIr(model: LoadedModel): void {
  if (model.proto.irVersion < IR_INT4) model.proto.irVersion = IR_INT4;
}

/**
 * Rewrites the consumer of `w` to use the quantized matrix `q` (canonical [N][K]). Throws QuantError/OnnxError
 * (e.g. 'opset-upgrade-unsafe') without having changed the graph when the rewrite is impossible.
 */
export function replaceWithQuantized(
  model: LoadedModel,
  w: WeightRef,
  q: QuantizedMatrix | null,
  o: ReplaceOptions,
): ReplaceResult {
  if (!q && !(o.packed && o.format === 'matmulnbits' && w.op !== 'Conv'))
    throw new QuantError(`${w.name}: nothing to write (no quantized matrix)`);
  const check = inspectConsumer(
    model,
    w,
    o.format,
    q && (q.bits === 4 || q.blocksPerRow > 1) ? 21 : 13,
    !!q && q.blocksPerRow === 1,
  );
  if (check.blocker) throw new QuantError(`${w.name}: ${check.blocker}`);
  const found = check.found!;
  const consumer = found.node;
  const graph = found.graph;
  const dtype = (check.dtype ? check.dtype.value : activationDtype(model, w)) ?? 'float32';
  const x = consumer.input[0];
  const weightValue = consumer.input[1];
  const out = consumer.output[0];
  // One walk for every name this replacement checks: until the commit below only uniqueName and addInitializer
  // change the graph, and both add what they take to `used`.
  const used = usedNames(model);
  const base = uniqueName(model, w.node.replace(/[^A-Za-z0-9_.-]/g, '_') || 'layer', used);
  const useNBits = o.format === 'matmulnbits' && w.op !== 'Conv';
  // Check what the new nodes need before touching anything.
  const dqOpset = useNBits ? 0 : q!.bits === 4 || q!.blocksPerRow > 1 ? 21 : 13;
  // The standard DequantizeLinear when the opset can be raised to what it needs; else, for per-channel groups,
  // ONNX Runtime's contrib DequantizeLinear (same semantics, axis attribute at any opset).
  let dqDomain: '' | typeof MS_DOMAIN = '';
  if (!useNBits) {
    try {
      checkOpset(model, dqOpset);
    } catch (e) {
      if (q!.blocksPerRow !== 1) throw e;
      dqDomain = MS_DOMAIN;
    }
  }
  const quantAdapters = o.adapter?.quantized;
  const newNodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  const coreOut = o.adapter && o.adapter.rank > 0 ? uniqueName(model, `${base}_core`, used) : out;
  let route: string;
  const bias = w.op === 'Gemm' && consumer.input[2] ? consumer.input[2] : undefined;
  if (useNBits) {
    const mmOut = bias ? uniqueName(model, `${base}_nobias`, used) : coreOut;
    const r = matMulNBitsNode({
      name: `${base}_MatMulNBits`,
      input: x,
      output: mmOut,
      weights: o.packed ?? packMatMulNBits(q!),
      accuracyLevel: o.accuracyLevel,
      dtype,
    });
    newNodes.push(...r.nodes);
    inits.push(...r.initializers);
    if (bias) newNodes.push(node('Add', [mmOut, bias], [coreOut], `${base}_bias`));
    route = 'MatMulNBits';
  } else {
    const qq = q!;
    const r = qdqWeight(qq, layoutOf(w), base, dtype, dqDomain);
    newNodes.push(...r.nodes);
    inits.push(...r.initializers);
    const op = { ...consumer, input: [...consumer.input], output: [...consumer.output] } as NodeProto;
    op.input[1] = r.output;
    op.output[0] = coreOut;
    newNodes.push(op);
    route = `DequantizeLinear(${qq.symmetric ? '' : 'u'}int${qq.bits}${qq.blocksPerRow > 1 ? ` block ${qq.blockSize}` : ' per-channel'})+${w.op}`;
  }
  let adapterBytes = 0;
  if (o.adapter && o.adapter.rank > 0) {
    let conv: { channels: number; kernel: number[]; attributes: AttributeProto[] } | undefined;
    if (w.op === 'Conv') {
      if ((w.group ?? 1) !== 1 || quantAdapters)
        throw new QuantError(`${w.name}: Conv adapters are written for group 1 and unquantized factors only`);
      const kernel = w.consumerShape.slice(2);
      conv = {
        channels: w.consumerShape[1],
        kernel,
        // The layer's geometry (strides, pads, dilations, auto_pad) so that X·A sees the same patches.
        attributes: consumer.attribute.filter((a) => ['strides', 'pads', 'dilations', 'auto_pad'].includes(a.name)),
      };
    }
    let qa: { a: MatMulNBitsWeights; b: MatMulNBitsWeights; accuracyLevel: number } | undefined;
    if (quantAdapters)
      qa = { a: packMatMulNBits(quantAdapters.a), b: packMatMulNBits(quantAdapters.b), accuracyLevel: o.accuracyLevel };
    const r = adapterNodes({
      name: `${base}_lora`,
      input: x,
      base: coreOut,
      output: out,
      K: w.K,
      N: w.N,
      rank: o.adapter.rank,
      a: o.adapter.a,
      b: o.adapter.b,
      dtype,
      storage: o.adapter.storage,
      quantized: qa,
      conv,
    });
    newNodes.push(...r.nodes);
    inits.push(...r.initializers);
    adapterBytes = tensorBytes(r.initializers);
    route += qa ? ' + 4-bit adapter' : ' + adapter';
  }
  // Commit: opsets, initializers, nodes in the consumer's place, then drop the old weight.
  if (useNBits || quantAdapters) ensureOpset(model, MS_DOMAIN, 1);
  if (!useNBits) {
    if (dqDomain === MS_DOMAIN) ensureOpset(model, MS_DOMAIN, 1);
    else ensureOpset(model, '', dqOpset);
    if (dqOpset >= 21) bumpIr(model); // int4 tensors need IR 10 whichever domain reads them
  }
  for (const t of inits) addInitializer(model, t, undefined, used);
  const idx = graph.node.indexOf(consumer);
  graph.node.splice(idx, 1, ...newNodes);
  removeDeadWeight(model, graph, weightValue, w.name);
  const nbitsNodes = newNodes.filter((n) => n.opType === 'MatMulNBits');
  const dqNodes = newNodes.filter((n) => n.opType === 'DequantizeLinear');
  return { route, bytes: tensorBytes(inits), adapterBytes, dtype, nbitsNodes, dqNodes };
}

function checkOpset(model: LoadedModel, version: number): void {
  // ensureOpset refuses unsafe upgrades; run it on a copy of the imports so a refusal leaves the model untouched.
  const saved = model.proto.opsetImport.map((o) => ({ domain: o.domain, version: o.version }));
  try {
    ensureOpset(model, '', version);
  } finally {
    model.proto.opsetImport.forEach((o, i) => {
      if (i < saved.length) o.version = saved[i].version;
    });
    model.proto.opsetImport.length = saved.length;
  }
}

/** Sets accuracy_level on MatMulNBits nodes written earlier (after 'auto' has been decided by timing). */
export function setAccuracyLevel(nodes: NodeProto[], level: number): void {
  for (const n of nodes) {
    const a = n.attribute.find((x) => x.name === 'accuracy_level');
    if (a) a.i = BigInt(level);
  }
}
