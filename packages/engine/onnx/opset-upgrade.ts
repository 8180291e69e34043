// Raising a model's default-domain opset while keeping every node's meaning: ops whose signature changed between
// the two versions are rewritten to their new form (attribute → constant input, Softmax's old 2-D coercion made
// explicit, …). Anything without an exact rewrite blocks the upgrade, and nothing is changed unless all of the
// model can be upgraded. ensureOpset() refuses such upgrades; upgradeOpset() performs them.
import { clone, create } from '@bufbuild/protobuf';
import type { AttributeProto, GraphProto, NodeProto, TensorProto } from './gen/onnx_pb.js';
import { AttributeProtoSchema, AttributeProto_AttributeType as AT, NodeProtoSchema } from './gen/onnx_pb.js';
import { OnnxError } from './errors.js';
import type { DType } from './dtypes.js';
import { dtypeFromOnnx } from './dtypes.js';
import type { LoadedModel } from './loaded.js';
import { makeTensor } from './tensor.js';
import { walkGraphs } from './walk.js';

interface RuleContext {
  node: NodeProto;
  graph: GraphProto;
  from: number;
  to: number;
  /** Adds a constant to the node's graph under a fresh name and returns the name. */
  constant(base: string, t: TensorProto): string;
  fresh(base: string): string;
  elemType(value: string): DType | undefined;
  /** Nodes to put in place of this one (when a rule expands it). */
  replaceWith(nodes: NodeProto[]): void;
}

/** Returns undefined when done, or why this node cannot be rewritten exactly. */
type Rule = (ctx: RuleContext) => string | undefined;

function attr(n: NodeProto, name: string): AttributeProto | undefined {
  return n.attribute.find((a) => a.name === name);
}
function dropAttr(n: NodeProto, name: string): void {
  n.attribute = n.attribute.filter((a) => a.name !== name);
}
function setInput(n: NodeProto, i: number, name: string): void {
  while (n.input.length < i) n.input.push('');
  n.input[i] = name;
}

/** Moves an INTS attribute to a constant int64 input at `index` (Squeeze, Unsqueeze, ReduceX, Split, TopK). */
function attrToInput(name: string, index: number, opts: { scalarShape?: number[] } = {}): Rule {
  return (ctx) => {
    const a = attr(ctx.node, name);
    if (!a) return undefined;
    const values = a.ints.length ? a.ints.map(Number) : [Number(a.i)];
    dropAttr(ctx.node, name);
    setInput(
      ctx.node,
      index,
      ctx.constant(
        `${ctx.node.name || ctx.node.opType}_${name}`,
        makeTensor('', 'int64', opts.scalarShape ?? [values.length], values),
      ),
    );
    return undefined;
  };
}

const FLT_MAX = 3.4028234663852886e38;

const clip11: Rule = (ctx) => {
  const lo = attr(ctx.node, 'min');
  const hi = attr(ctx.node, 'max');
  const dtype = ctx.elemType(ctx.node.input[0]);
  if (!dtype || !['float32', 'float16', 'float64', 'bfloat16'].includes(dtype))
    return `Clip on a value of unknown or non-float type (${dtype ?? 'unknown'})`;
  // Opset < 11 clips to ±FLT_MAX when a bound is absent; spell that out so ±Inf inputs behave the same.
  const bound = (a: AttributeProto | undefined, dflt: number) =>
    ctx.constant(`${ctx.node.name || 'Clip'}_bound`, makeTensor('', dtype, [], [a ? a.f : dflt]));
  const min = bound(lo, -FLT_MAX);
  const max = bound(hi, FLT_MAX);
  dropAttr(ctx.node, 'min');
  dropAttr(ctx.node, 'max');
  ctx.node.input = [ctx.node.input[0], min, max];
  return undefined;
};

const slice10: Rule = (ctx) => {
  const starts = attr(ctx.node, 'starts');
  const ends = attr(ctx.node, 'ends');
  if (!starts || !ends) return 'Slice without starts/ends attributes';
  const axes = attr(ctx.node, 'axes');
  const base = ctx.node.name || 'Slice';
  const ints = (a: AttributeProto) => makeTensor('', 'int64', [a.ints.length], a.ints.map(Number));
  const inputs = [
    ctx.node.input[0],
    ctx.constant(`${base}_starts`, ints(starts)),
    ctx.constant(`${base}_ends`, ints(ends)),
  ];
  if (axes) inputs.push(ctx.constant(`${base}_axes`, ints(axes)));
  for (const k of ['starts', 'ends', 'axes']) dropAttr(ctx.node, k);
  ctx.node.input = inputs;
  return undefined;
};

/** Opset < 13 Softmax-family: flatten to 2-D at `axis`, normalise rows, restore the shape. Exact for any rank. */
const softmax13: Rule = (ctx) => {
  const n = ctx.node;
  const axis = Number(attr(n, 'axis')?.i ?? 1n);
  if (axis === -1) return undefined;
  const base = n.name || n.opType;
  const shape = ctx.fresh(`${base}_shape`);
  const flat = ctx.fresh(`${base}_2d`);
  const soft = ctx.fresh(`${base}_rows`);
  const mk = (opType: string, input: string[], output: string[], attrs: AttributeProto[] = []) =>
    create(NodeProtoSchema, { name: ctx.fresh(`${base}_${opType}`), opType, input, output, attribute: attrs });
  const axisAttr = (v: number) => create(AttributeProtoSchema, { name: 'axis', type: AT.INT, i: BigInt(v) });
  ctx.replaceWith([
    mk('Shape', [n.input[0]], [shape]),
    mk('Flatten', [n.input[0]], [flat], [axisAttr(axis)]),
    mk(n.opType, [flat], [soft], [axisAttr(-1)]),
    mk('Reshape', [soft, shape], [n.output[0]]),
  ]);
  return undefined;
};

const dropout12: Rule = (ctx) => {
  const ratio = attr(ctx.node, 'ratio');
  if (!ratio) return undefined;
  dropAttr(ctx.node, 'ratio');
  setInput(ctx.node, 1, ctx.constant(`${ctx.node.name || 'Dropout'}_ratio`, makeTensor('', 'float32', [], [ratio.f])));
  return undefined;
};

const pad11: Rule = (ctx) => {
  const pads = attr(ctx.node, 'pads');
  if (!pads) return 'Pad without a pads attribute (opset 1 "paddings")';
  const value = attr(ctx.node, 'value');
  const base = ctx.node.name || 'Pad';
  const inputs = [
    ctx.node.input[0],
    ctx.constant(`${base}_pads`, makeTensor('', 'int64', [pads.ints.length], pads.ints.map(Number))),
  ];
  if (value && value.f !== 0) {
    const dtype = ctx.elemType(ctx.node.input[0]);
    if (!dtype) return 'Pad with a constant value on a value of unknown type';
    inputs.push(ctx.constant(`${base}_value`, makeTensor('', dtype, [], [value.f])));
  }
  dropAttr(ctx.node, 'pads');
  dropAttr(ctx.node, 'value');
  ctx.node.input = inputs;
  return undefined;
};

const split18: Rule = (ctx) => {
  if (ctx.node.input[1] || attr(ctx.node, 'num_outputs')) return undefined;
  ctx.node.attribute.push(
    create(AttributeProtoSchema, { name: 'num_outputs', type: AT.INT, i: BigInt(ctx.node.output.length) }),
  );
  return undefined;
};

const batchNorm9: Rule = (ctx) => {
  const spatial = attr(ctx.node, 'spatial');
  if (spatial && spatial.i !== 1n) return 'BatchNormalization with spatial=0';
  dropAttr(ctx.node, 'spatial');
  return undefined;
};

const roiAlign16: Rule = (ctx) => {
  if (!attr(ctx.node, 'coordinate_transformation_mode'))
    ctx.node.attribute.push(
      create(AttributeProtoSchema, {
        name: 'coordinate_transformation_mode',
        type: AT.STRING,
        s: new TextEncoder().encode('output_half_pixel'),
      }),
    );
  return undefined;
};

const resize13: Rule = (ctx) => {
  const mode = attr(ctx.node, 'coordinate_transformation_mode');
  if (mode && new TextDecoder().decode(mode.s) === 'tf_half_pixel_for_nn') return 'Resize with tf_half_pixel_for_nn';
  return undefined;
};

const blocked =
  (why: string): Rule =>
  () =>
    why;

/** op → [opset version that changed it, rule that rewrites a node written for an earlier version]. */
const RULES: Record<string, [number, Rule][]> = {
  Squeeze: [[13, attrToInput('axes', 1)]],
  Unsqueeze: [[13, attrToInput('axes', 1)]],
  ReduceSum: [[13, attrToInput('axes', 1)]],
  ...Object.fromEntries(
    [
      'ReduceMean',
      'ReduceMax',
      'ReduceMin',
      'ReduceProd',
      'ReduceL1',
      'ReduceL2',
      'ReduceLogSum',
      'ReduceLogSumExp',
      'ReduceSumSquare',
    ].map((op) => [op, [[18, attrToInput('axes', 1)]] as [number, Rule][]]),
  ),
  Split: [
    [13, attrToInput('split', 1)],
    [18, split18],
  ],
  Clip: [[11, clip11]],
  Slice: [[10, slice10]],
  TopK: [[10, attrToInput('k', 1)]],
  Pad: [[11, pad11]],
  Softmax: [[13, softmax13]],
  LogSoftmax: [[13, softmax13]],
  Hardmax: [[13, softmax13]],
  Dropout: [[12, dropout12]],
  BatchNormalization: [[9, batchNorm9]],
  RoiAlign: [[16, roiAlign16]],
  Resize: [
    [11, blocked('Resize from opset 10 (coordinate modes changed)')],
    [13, resize13],
  ],
  Upsample: [[10, blocked('Upsample was removed in opset 10')]],
  Scatter: [[11, blocked('Scatter was replaced by ScatterElements in opset 11')]],
  Scan: [[9, blocked('Scan changed its inputs in opset 9')]],
  GridSample: [[20, blocked('GridSample renamed its modes in opset 20')]],
  DFT: [[20, blocked('DFT moved axis to an input in opset 20')]],
  GroupNormalization: [[21, blocked('GroupNormalization changed scale/bias shapes in opset 21')]],
};

/** Which default-domain ops would change meaning between `from` and `to` (empty: a plain import bump is safe). */
export function opsChangedBetween(model: LoadedModel, from: number, to: number): string[] {
  const out = new Set<string>();
  walkGraphs(model.proto, (v) => {
    for (const n of v.graph.node) {
      if (n.domain !== '' && n.domain !== 'ai.onnx') continue;
      if (RULES[n.opType]?.some(([since]) => since > from && since <= to)) out.add(n.opType);
    }
  });
  return [...out].sort();
}

/** Lowest IR version that goes with each opset (ONNX release table); raising the opset raises the IR to match. */
function minIrFor(opset: number): number {
  if (opset >= 21) return 10;
  if (opset >= 19) return 9;
  if (opset >= 15) return 8;
  if (opset >= 13) return 7;
  return 3;
}

/**
 * Raises the default-domain opset to `version`, rewriting every node whose op changed in between so that the model
 * computes exactly what it did. Throws 'opset-upgrade-unsafe' (leaving the model untouched) when some node has no
 * exact rewrite, and for models older than opset 7.
 */
export function upgradeOpsetWith(
  model: LoadedModel,
  version: number,
  elemType: (name: string) => number | undefined,
): void {
  const imp = model.proto.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  const from = imp ? Number(imp.version) : 1;
  if (from >= version) return;
  if (from < 7) throw new OnnxError('opset-upgrade-unsafe', `upgrading from opset ${from} (< 7) is not supported`);
  // Plan on clones first so a refusal leaves the model as it was.
  const plans: { graph: GraphProto; node: NodeProto; replacement: NodeProto[]; constants: TensorProto[] }[] = [];
  const problems: string[] = [];
  const used = new Set<string>();
  walkGraphs(model.proto, (v) => {
    for (const t of v.graph.initializer) used.add(t.name);
    for (const n of v.graph.node) {
      used.add(n.name);
      for (const o of n.output) used.add(o);
    }
  });
  const fresh = (base: string) => {
    let name = base.replace(/[^A-Za-z0-9_.\-/]/g, '_');
    for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
    used.add(name);
    return name;
  };
  walkGraphs(model.proto, (v) => {
    for (const node of v.graph.node) {
      if (node.domain !== '' && node.domain !== 'ai.onnx') continue;
      const rules = (RULES[node.opType] ?? []).filter(([since]) => since > from && since <= version);
      if (!rules.length) continue;
      const copy = clone(NodeProtoSchema, node);
      const constants: TensorProto[] = [];
      let replacement: NodeProto[] = [copy];
      const ctx: RuleContext = {
        node: copy,
        graph: v.graph,
        from,
        to: version,
        fresh,
        constant: (base, t) => {
          const name = fresh(base);
          t.name = name;
          constants.push(t);
          return name;
        },
        elemType: (name) => {
          const e = elemType(name);
          return e ? dtypeFromOnnx(e) : undefined;
        },
        replaceWith: (nodes) => (replacement = nodes),
      };
      for (const [, rule] of rules) {
        const why = rule(ctx);
        if (why) problems.push(`${node.name || node.opType}: ${why}`);
      }
      plans.push({ graph: v.graph, node, replacement, constants });
    }
  });
  if (problems.length)
    throw new OnnxError(
      'opset-upgrade-unsafe',
      `cannot raise opset ${from} → ${version}: ${problems.slice(0, 5).join('; ')}`,
    );
  for (const p of plans) {
    p.graph.node.splice(p.graph.node.indexOf(p.node), 1, ...p.replacement);
    p.graph.initializer.push(...p.constants);
  }
  imp!.version = BigInt(version);
  const ir = minIrFor(version);
  if (model.proto.irVersion < BigInt(ir)) model.proto.irVersion = BigInt(ir);
}
