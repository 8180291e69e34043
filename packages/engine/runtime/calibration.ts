// Calibration plumbing between the runner and the statistics collector: one stats request per (activation, Conv
// geometry), a session on the dense model with those activations exposed as graph outputs (written to a temp file
// before the method edits anything, so statistics always describe the dense model), and the per-layer output error.
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { ValueInfoProtoSchema, type GraphProto, type NodeProto, type ValueInfoProto } from '../onnx/gen/onnx_pb.js';
import { addGraphOutputs, liveNodes, namesReadBy, tensorValueInfo, valueElemType } from '../onnx/graph.js';
import { saveModel, type LoadedModel } from '../onnx/model.js';
import type { WeightRef } from '../onnx/weights.js';
import { findGraph, nodeKey } from '../onnx/walk.js';
import { errorRatio, outputErrorOnRows, quadraticTraces, relativeOutputError } from '../math/relerr.js';
import type { LayerStats } from '../methods/types.js';
import { convGeometry, geometryKey } from './conv.js';
import { openSession, type ExecutionProvider, type OpenedSession } from './session.js';
import { openLoadedModel } from './open-model.js';
import { appendStatistics, type CaptureOutputs, type PassCut } from './capture.js';

export type { PassCut };
import { hessianBytes, type CaptureSession, type StatsRequest } from './stats.js';

/** Finds a node by the key discoverWeights reports (name, or `<op>#<index>`) in the graph at `graphPath`. */
export function findNodeByKey(model: LoadedModel, key: string, graphPath = ''): NodeProto | undefined {
  const nodes =
    graphPath === '' ? (model.proto.graph?.node ?? []) : (findGraph(model.proto, graphPath)?.graph.node ?? []);
  for (let i = 0; i < nodes.length; i++) if (nodeKey(nodes[i], i) === key) return nodes[i];
  return undefined;
}

/** The statistics request for a weight's input activation. */
export function statsRequestFor(model: LoadedModel, w: WeightRef, hessian: boolean): StatsRequest {
  if (!w.activation) throw new Error(`weight ${w.name} has no activation`);
  if (w.op !== 'Conv') return { key: w.activation, activation: w.activation, K: w.K, groups: 1, hessian };
  const node = findNodeByKey(model, w.node, w.graphPath);
  if (!node) throw new Error(`Conv node ${w.node} of weight ${w.name} not found in graph '${w.graphPath}'`);
  const conv = convGeometry(node, w.consumerShape);
  return {
    key: `${w.activation}|conv:${geometryKey(conv)}`,
    activation: w.activation,
    K: w.K,
    groups: conv.group,
    conv,
    hessian,
  };
}

/**
 * The weight's MatMul as a StatsRequest output (its ‖X_s·W‖², or with a Hessian ‖X·W‖², comes from the capture
 * pass), when it reads the activation as its first input and the weight itself as its second in the main graph: then
 * its output is X·W.
 */
export function consumerOutput(
  model: LoadedModel,
  w: WeightRef,
): NonNullable<StatsRequest['outputs']>[number] | undefined {
  if (w.op !== 'MatMul' || w.graphPath !== '' || !w.activation) return undefined;
  const node = findNodeByKey(model, w.node);
  if (!node || node.opType !== 'MatMul' || node.input[0] !== w.activation || node.input[1] !== w.name) return undefined;
  return { weight: w.name, value: node.output[0], N: w.N };
}

export { hessianBytes };

let statsFiles = 0;

/**
 * Writes the dense model with `activations` added as graph outputs to `dir` and opens a session on it. The caller's
 * model is left exactly as it was (the outputs are removed again after writing).
 */
export async function openStatsSession(
  model: LoadedModel,
  activations: string[],
  dir: string,
  executionProviders: readonly ExecutionProvider[],
): Promise<OpenedSession & { path: string }> {
  const graph = model.proto.graph!;
  const existing = new Set(graph.output.map((o) => o.name));
  const added = activations.filter((a) => !existing.has(a));
  const before = graph.output.length;
  addOutputsTyped(model, added);
  // A fresh file per call: a session may still map an earlier one (external data), and sequential calibration
  // writes the partly compressed model once per pass.
  const path = join(dir, `with-activations-${++statsFiles}.onnx`);
  try {
    await saveModel(model, path);
  } finally {
    graph.output.splice(before);
  }
  const s = await openSession(path, { executionProviders });
  return { ...s, path };
}

/**
 * A session on the model with the in-graph reductions of `reqs` appended (capture.ts); the caller's model is left
 * exactly as it was. One run of this session per calibration batch gives every request's statistics for that batch.
 * The weights are not copied where they already lie in page-aligned external data (open-model.ts): ONNX Runtime maps
 * them from the input's own files, and nothing writes or holds a second copy of the model while it builds its own.
 * Unless `opts.modelOutputs` (the model's own outputs are fetched too), the graph is cut to the nodes the reductions
 * depend on: ONNX Runtime runs every node whatever is fetched, and a pass whose last activation is mid-model (the
 * second of three on the 1 B LLM) or that needs no logits skips the rest (measured on the 245 M LLM: a capture of the
 * first block's input 3.0 s uncut, 0.04 s cut). `opts.runs` (the batches it will run) decides prepacking.
 */
export async function openCaptureSession(
  model: LoadedModel,
  reqs: StatsRequest[],
  dir: string,
  executionProviders: readonly ExecutionProvider[],
  opts: CaptureSessionOptions = {},
): Promise<CaptureSession> {
  const appended = appendStatistics(model, reqs);
  const graph = model.proto.graph!;
  const saved = { node: graph.node.slice(), output: graph.output.slice(), input: graph.input.slice() };
  try {
    if (opts.fetch?.length) addOutputsTyped(model, opts.fetch);
    if (!opts.modelOutputs) {
      const reductions = [...appended.outputs.values()].flatMap(outputNames);
      const wanted = new Set([...reductions, ...(opts.fetch ?? [])]);
      for (const name of outputSquaresOfLiveLayers(graph, wanted, appended.outputs)) wanted.add(name);
      graph.output.splice(0, graph.output.length, ...graph.output.filter((o) => wanted.has(o.name)));
      const live = liveNodes(graph, wanted);
      graph.node.splice(0, graph.node.length, ...(opts.cut ? startingAt(saved.node, live, opts.cut) : live));
      if (opts.cut) readFrontier(graph, saved.input, opts.cut);
    }
    // No CPU arena: a capture run is one forward pass per batch, and the arena would keep its high-water mark of
    // intermediates (+350 MB on the 245 M LLM at 8 × 128 tokens) next to the weights for the rest of the pass.
    const s = await openLoadedModel(model, dir, { executionProviders, cpuMemArena: false, runs: opts.runs });
    return {
      session: s.session,
      executionProvider: s.executionProvider,
      fallbacks: s.fallbacks,
      outputs: appended.outputs,
    };
  } finally {
    graph.node.splice(0, graph.node.length, ...saved.node);
    graph.output.splice(0, graph.output.length, ...saved.output);
    graph.input.splice(0, graph.input.length, ...saved.input);
    appended.undo();
  }
}

export interface CaptureSessionOptions {
  /** Calibration batches the session will run (decides prepacking, open-model.ts). */
  runs?: number;
  /** Fetch the model's own outputs too (else the graph is cut to what the reductions need). */
  modelOutputs?: boolean;
  /** Values to fetch as well (the first pass fetches the later passes' frontiers). */
  fetch?: string[];
  /** Run only from this cut on, its frontier fed as inputs (a later pass; passCut). */
  cut?: PassCut;
}

/**
 * The cut for a pass over `activations` (main-graph values) of the model as loaded, or undefined where there is
 * nothing to skip or a crossing value's type is unknown.
 */
export function passCut(model: LoadedModel, activations: string[]): PassCut | undefined {
  const graph = model.proto.graph!;
  const producer = new Map<string, number>();
  graph.node.forEach((n, i) => n.output.forEach((o) => o && producer.set(o, i)));
  let start = Infinity;
  for (const a of activations) start = Math.min(start, producer.get(a) ?? -1);
  if (start <= 0) return undefined;
  const at = new Map(graph.node.map((n, i) => [n, i] as const));
  const crossing = new Set<string>();
  for (const n of liveNodes(graph, activations)) {
    if (at.get(n)! < start) continue;
    for (const name of namesReadBy(n)) if ((producer.get(name) ?? start) < start) crossing.add(name);
  }
  const frontier: PassCut['frontier'] = [];
  for (const name of crossing) {
    const elemType = valueElemType(model, name);
    if (elemType === undefined) return undefined;
    frontier.push({ name, elemType });
  }
  return { start, frontier };
}

/** The live nodes at or after the cut (appended reductions come after every original node). */
function startingAt(original: NodeProto[], live: NodeProto[], cut: PassCut): NodeProto[] {
  const skipped = new Set(original.slice(0, cut.start));
  return live.filter((n) => !skipped.has(n));
}

/** The cut graph reads the model inputs its nodes still read, and the frontier. */
function readFrontier(graph: GraphProto, inputs: ValueInfoProto[], cut: PassCut): void {
  const read = new Set(graph.node.flatMap(namesReadBy));
  graph.input.splice(
    0,
    graph.input.length,
    ...inputs.filter((i) => read.has(i.name)),
    ...cut.frontier.map((f) => tensorValueInfo(f.name, f.elemType)),
  );
}

function addOutputsTyped(model: LoadedModel, names: string[]): void {
  for (const name of names) {
    try {
      addGraphOutputs(model, [name]);
    } catch {
      // Type not inferable statically: ONNX Runtime infers the type of an untyped graph output itself.
      model.proto.graph!.output.push(create(ValueInfoProtoSchema, { name }));
    }
  }
}

/**
 * The ‖X_s·W‖² and ‖Y‖² outputs (capture.ts outSq, outTr) whose MatMul runs for the rest of the pass anyway; the
 * others are dropped from `outputs`: a layer past the pass's last activation (the LM head, in a pass that does not
 * fetch the model's outputs) would otherwise run over every calibration row for a reference its method gets from the
 * row sample or its Hessian.
 */
function outputSquaresOfLiveLayers(graph: GraphProto, wanted: Set<string>, outputs: Map<string, CaptureOutputs>) {
  const produced = new Set(liveNodes(graph, wanted).flatMap((n) => n.output));
  const kept: string[] = [];
  for (const o of outputs.values()) {
    if (o.outputSq) {
      o.outputSq = o.outputSq.filter((q) => produced.has(q.value));
      kept.push(...o.outputSq.map((q) => q.name));
    }
    if (o.outputTrace) {
      o.outputTrace = o.outputTrace.filter((q) => produced.has(q.value));
      kept.push(...o.outputTrace.map((q) => q.name));
    }
  }
  return kept;
}

function outputNames(o: CaptureOutputs): string[] {
  return [o.shape, o.sumSq, ...(o.hessian ?? []).map((t) => t.name), ...(o.sample ? [o.sample] : [])];
}

/**
 * ‖X(W−Ŵ)‖/‖XW‖ from the calibration Hessian(s), else from the row sample (LayerStats.sample); grouped Conv sums
 * numerator and denominator over groups (output rows of group g see only group g's inputs). null when there is
 * neither. With one Hessian and the pass's tr(W·H·Wᵀ) for this weight (LayerStats.outputTraces) only the numerator
 * tr(ΔHΔᵀ) is computed: N·K² flops instead of the 2·N·K² of both traces.
 */
export async function layerRelativeError(
  w: WeightRef,
  stats: LayerStats | undefined,
  before: Float32Array,
  after: Float32Array,
): Promise<number | null> {
  const hs = stats?.hessian;
  if (!hs) return stats?.sample ? sampleRelativeError(w, stats.sample, before, after) : null;
  const { N, K } = w;
  if (hs.length === 1) {
    const den = stats.outputTraces?.get(w.name);
    if (den === undefined || !Number.isFinite(den)) return relativeOutputError(before, after, N, K, hs[0]);
    const delta = new Float32Array(N * K);
    for (let i = 0; i < delta.length; i++) delta[i] = before[i] - after[i];
    return errorRatio((await quadraticTraces(delta, N, K, hs[0])).num, den);
  }
  const per = N / hs.length;
  let num = 0;
  let den = 0;
  for (let g = 0; g < hs.length; g++) {
    const h = hs[g];
    for (let r = g * per; r < (g + 1) * per; r++) {
      const base = r * K;
      for (let i = 0; i < K; i++) {
        const wi = before[base + i];
        const di = wi - after[base + i];
        if (wi === 0 && di === 0) continue;
        let sw = 0;
        let sd = 0;
        for (let j = 0; j < K; j++) {
          const hij = h[i * K + j];
          sw += hij * before[base + j];
          sd += hij * (before[base + j] - after[base + j]);
        }
        den += wi * sw;
        num += di * sd;
      }
    }
  }
  if (num <= 0) return 0;
  if (den <= 0) return Infinity;
  return Math.sqrt(num / den);
}

async function sampleRelativeError(
  w: WeightRef,
  sample: { rows: number; x: Float32Array[] },
  before: Float32Array,
  after: Float32Array,
): Promise<number> {
  const groups = sample.x.length;
  const per = w.N / groups;
  let num = 0;
  let den = 0;
  for (let g = 0; g < groups; g++) {
    const span = [g * per * w.K, (g + 1) * per * w.K] as const;
    const t = await outputErrorOnRows(
      before.subarray(...span),
      after.subarray(...span),
      per,
      w.K,
      sample.x[g],
      sample.rows,
    );
    num += t.num;
    den += t.den;
  }
  if (num <= 0) return 0;
  if (den <= 0) return Infinity;
  return Math.sqrt(num / den);
}

/** Bytes of float64 Hessians a weight's statistics would take. */
export function requestHessianBytes(req: StatsRequest): number {
  return hessianBytes(req);
}
