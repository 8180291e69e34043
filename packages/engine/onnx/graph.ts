// Graph editing primitives the compression methods use. They keep the model valid: names stay unique, new values
// get types, rewiring respects subgraph scoping, and opset upgrades that would change existing ops' meaning are
// refused rather than done silently.
import { create } from '@bufbuild/protobuf';
import type { GraphProto, NodeProto, TensorProto, ValueInfoProto } from './gen/onnx_pb.js';
import {
  OperatorSetIdProtoSchema,
  TensorShapeProtoSchema,
  TensorShapeProto_DimensionSchema,
  TypeProtoSchema,
  TypeProto_TensorSchema,
  ValueInfoProtoSchema,
} from './gen/onnx_pb.js';
import { OnnxError } from './errors.js';
import type { DType } from './dtypes.js';
import { onnxFromDtype } from './dtypes.js';
import type { LoadedModel } from './loaded.js';
import { buildScopeIndex } from './scopes.js';
import { opsChangedBetween, upgradeOpsetWith } from './opset-upgrade.js';
import type { GraphVisit } from './walk.js';
import { nodeKey, subgraphsOf, walkGraphs } from './walk.js';

/** A ValueInfo for a tensor of `dtype` (shape optional; strings are symbolic dims). */
export function tensorValueInfo(name: string, dtype: DType | number, shape?: (number | string)[]): ValueInfoProto {
  const tensorType = create(TypeProto_TensorSchema, {
    elemType: typeof dtype === 'number' ? dtype : onnxFromDtype(dtype),
  });
  if (shape)
    tensorType.shape = create(TensorShapeProtoSchema, {
      dim: shape.map((d) =>
        create(TensorShapeProto_DimensionSchema, {
          value: typeof d === 'number' ? { case: 'dimValue', value: BigInt(d) } : { case: 'dimParam', value: d },
        }),
      ),
    });
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, { value: { case: 'tensorType', value: tensorType } }),
  });
}

export interface FoundNode {
  node: NodeProto;
  index: number;
  graph: GraphProto;
  graphPath: string;
}

/** Finds a node by name (or by the `<op>#<index>` key weight discovery uses for unnamed nodes), in any graph. */
export function findNode(model: LoadedModel, name: string, graphPath?: string): FoundNode | undefined {
  let found: FoundNode | undefined;
  walkGraphs(model.proto, (v) => {
    if (found || (graphPath !== undefined && v.path !== graphPath)) return;
    v.graph.node.forEach((node, index) => {
      if (!found && (node.name === name || nodeKey(node, index) === name))
        found = { node, index, graph: v.graph, graphPath: v.path };
    });
  });
  return found;
}

function graphOfNode(model: LoadedModel, node: NodeProto): GraphVisit {
  let found: GraphVisit | undefined;
  walkGraphs(model.proto, (v) => {
    if (!found && v.graph.node.includes(node)) found = v;
  });
  if (!found) throw new OnnxError('not-found', `node '${node.name || node.opType}' is not in this model`);
  return found;
}

/** Whether `name` is used anywhere in the model; a scan with string compares, no set built. */
function nameInUse(model: LoadedModel, name: string): boolean {
  let used = false;
  walkGraphs(model.proto, (v) => {
    if (used) return;
    const g = v.graph;
    if (g.input.some((i) => i.name === name) || g.output.some((i) => i.name === name)) used = true;
    else if (g.valueInfo.some((i) => i.name === name) || g.initializer.some((t) => t.name === name)) used = true;
    else if (g.sparseInitializer.some((s) => s.values?.name === name)) used = true;
    else
      for (const n of g.node)
        if (n.name === name || n.output.includes(name) || n.input.includes(name)) {
          used = true;
          break;
        }
  });
  return used;
}

/**
 * Every name the model uses (what nameInUse scans for), in one walk: for a caller that asks about many names while
 * only adding names itself (one layer's replacement), instead of one full scan per name. The caller owns it; it is
 * exact until the graph is changed by anything that does not add to it (see uniqueName, addInitializer).
 */
export function usedNames(model: LoadedModel): Set<string> {
  const used = new Set<string>();
  walkGraphs(model.proto, (v) => {
    const g = v.graph;
    for (const i of g.input) used.add(i.name);
    for (const o of g.output) used.add(o.name);
    for (const i of g.valueInfo) used.add(i.name);
    for (const t of g.initializer) used.add(t.name);
    for (const s of g.sparseInitializer) if (s.values) used.add(s.values.name);
    for (const n of g.node) {
      used.add(n.name);
      for (const x of n.output) used.add(x);
      for (const x of n.input) used.add(x);
    }
  });
  return used;
}

interface NameState {
  handed: Set<string>;
  nextSuffix: Map<string, number>;
}
const reserved = new WeakMap<LoadedModel, NameState>();

/**
 * A name not used anywhere in the model (nor handed out before by this function): `base`, `base_1`, `base_2`, …
 * `used` (from usedNames, kept current by the caller) replaces the scan of the model per candidate; the name
 * returned is added to it.
 */
export function uniqueName(model: LoadedModel, base: string, used?: Set<string>): string {
  let st = reserved.get(model);
  if (!st) reserved.set(model, (st = { handed: new Set(), nextSuffix: new Map() }));
  let i = st.nextSuffix.get(base) ?? 0;
  let name = i ? `${base}_${i}` : base;
  const inUse = used ? (x: string) => used.has(x) : (x: string) => nameInUse(model, x);
  while (st.handed.has(name) || inUse(name)) name = `${base}_${++i}`;
  st.nextSuffix.set(base, i + 1);
  st.handed.add(name);
  used?.add(name);
  return name;
}

/**
 * Makes `domain` importable at >= `version`. Raises an existing import only when no existing op changes meaning
 * between the two versions; otherwise throws 'opset-upgrade-unsafe' naming the ops (see upgradeOpset).
 */
export function ensureOpset(model: LoadedModel, domain: string, version: number): void {
  const d = domain === 'ai.onnx' ? '' : domain;
  const imports = model.proto.opsetImport;
  const cur = imports.find((o) => (o.domain === 'ai.onnx' ? '' : o.domain) === d);
  if (!cur) {
    imports.push(create(OperatorSetIdProtoSchema, { domain: d, version: BigInt(version) }));
    return;
  }
  const from = Number(cur.version);
  if (from >= version) return;
  if (d === '') {
    const changed = opsChangedBetween(model, from, version);
    if (changed.length)
      throw new OnnxError(
        'opset-upgrade-unsafe',
        `raising the ONNX opset from ${from} to ${version} would change these ops: ${changed.join(', ')} ` +
          '(upgradeOpset() rewrites them)',
      );
  }
  cur.version = BigInt(version);
}

/**
 * Raises the default-domain opset to `version` and rewrites the ops that changed in between (Squeeze/Unsqueeze/
 * Reduce* axes, Clip bounds, Slice, Split, TopK, Pad, Dropout, Softmax's 2-D coercion, …) so the model computes
 * exactly what it did; raises the IR version to match. Throws 'opset-upgrade-unsafe' and changes nothing when a
 * node has no exact rewrite.
 */
export function upgradeOpset(model: LoadedModel, version: number): void {
  upgradeOpsetWith(model, version, elemTypeResolver(model));
}

/**
 * Rewires every reader of `from` (nodes in its graph and in nested subgraphs that see it) to read `to` instead.
 * Graph outputs are not renamed (that would change the model's interface): when `from` is a graph output, make the
 * producer write a new name instead (see renameProducerOutput). Returns the number of inputs rewired.
 */
export function replaceAllUses(
  model: LoadedModel,
  from: string,
  to: string,
  opts: { except?: NodeProto[] } = {},
): number {
  // Every use of a value named `from` resolves to some definition named `from`, so a scan over node inputs is the
  // same as following uses definition by definition — without building an index.
  const except = new Set(opts.except ?? []);
  let count = 0;
  walkGraphs(model.proto, (v) => {
    for (const n of v.graph.node) {
      if (except.has(n)) continue;
      for (let i = 0; i < n.input.length; i++)
        if (n.input[i] === from) {
          n.input[i] = to;
          count++;
        }
    }
  });
  return count;
}

/**
 * Makes the node producing `name` write a fresh name instead and returns it; readers and graph outputs keep
 * reading `name`, which the caller must now produce (e.g. an adapter branch: Add(fresh, X·L·R) → name).
 */
export function renameProducerOutput(model: LoadedModel, name: string): string {
  let producer: NodeProto | undefined;
  walkGraphs(model.proto, (v) => {
    for (const n of v.graph.node) if (!producer && n.output.includes(name)) producer = n;
  });
  if (!producer) throw new OnnxError('not-found', `no node produces '${name}'`);
  const fresh = uniqueName(model, `${name}_pre`);
  producer.output[producer.output.indexOf(name)] = fresh;
  return fresh;
}

/** Inserts nodes right before `consumer` in its graph (so they may read anything defined before it). */
export function insertNodesBefore(model: LoadedModel, consumer: NodeProto, nodes: NodeProto[]): void {
  const v = graphOfNode(model, consumer);
  for (const n of nodes) if (!n.name) n.name = uniqueName(model, n.opType);
  v.graph.node.splice(v.graph.node.indexOf(consumer), 0, ...nodes);
}

/**
 * Adds an initializer to the main graph (or `graph`); its name must be unused. `used` (see usedNames) replaces
 * the scan of the model and gets the name.
 */
export function addInitializer(model: LoadedModel, tensor: TensorProto, graph?: GraphProto, used?: Set<string>): void {
  if (!tensor.name) throw new OnnxError('invalid-argument', 'an initializer needs a name');
  if (used ? used.has(tensor.name) : nameInUse(model, tensor.name))
    throw new OnnxError('invalid-argument', `name '${tensor.name}' is already used in the model`);
  (graph ?? model.proto.graph!).initializer.push(tensor);
  used?.add(tensor.name);
}

/** Removes an initializer / sparse initializer / Constant node named `name` when nothing reads it. */
export function removeInitializerIfUnused(model: LoadedModel, name: string): boolean {
  // Fast path: nothing anywhere reads the name, so the first stored value with it can go.
  let read = false;
  walkGraphs(model.proto, (v) => {
    if (!read) read = v.graph.output.some((o) => o.name === name) || v.graph.node.some((n) => n.input.includes(name));
  });
  if (!read) {
    let removed = false;
    walkGraphs(model.proto, (v) => {
      if (removed) return;
      const g = v.graph;
      const t = g.initializer.findIndex((x) => x.name === name);
      const s = g.sparseInitializer.findIndex((x) => x.values?.name === name);
      const c = g.node.findIndex((n) => n.opType === 'Constant' && n.output.includes(name));
      if (t >= 0) {
        g.initializer.splice(t, 1);
        const inp = g.input.findIndex((i) => i.name === name);
        if (inp >= 0) g.input.splice(inp, 1);
      } else if (s >= 0) g.sparseInitializer.splice(s, 1);
      else if (c >= 0) g.node.splice(c, 1);
      removed = t >= 0 || s >= 0 || c >= 0;
    });
    return removed;
  }
  // Something reads the name: resolve scopes to see whether it is this definition or a shadowing one.
  const index = buildScopeIndex(model);
  for (const v of index.visits) {
    const def = index.scopes.get(v)!.get(name);
    if (!def || (index.uses.get(def)?.length ?? 0) > 0) continue;
    const g = def.graph;
    if (def.kind === 'initializer') {
      g.initializer.splice(g.initializer.indexOf(def.tensor!), 1);
      if (def.overridable)
        g.input.splice(
          g.input.findIndex((i) => i.name === name),
          1,
        );
      return true;
    }
    if (def.kind === 'sparse') {
      g.sparseInitializer.splice(g.sparseInitializer.indexOf(def.sparse!), 1);
      return true;
    }
    if (def.kind === 'constant') {
      g.node.splice(g.node.indexOf(def.node!), 1);
      return true;
    }
  }
  return false;
}

/** Element type of a value, from declarations or a short walk over producers; undefined when unknown. */
export function valueElemType(model: LoadedModel, name: string): number | undefined {
  return elemTypeResolver(model, name)(name);
}

/**
 * Builds the lookup once, for many names: declared types (inputs, outputs, value_info, initializers), then one
 * forward pass over the nodes in graph order (ONNX requires topological order), so long chains cost no recursion.
 */
function elemTypeResolver(model: LoadedModel, only?: string): (name: string) => number | undefined {
  const types = new Map<string, number>();
  walkGraphs(model.proto, (v) => {
    for (const vi of [...v.graph.input, ...v.graph.output, ...v.graph.valueInfo])
      if (vi.type?.value.case === 'tensorType' && vi.type.value.value.elemType)
        types.set(vi.name, vi.type.value.value.elemType);
    for (const t of v.graph.initializer) types.set(t.name, t.dataType);
    for (const s of v.graph.sparseInitializer) if (s.values) types.set(s.values.name, s.values.dataType);
  });
  // A typed name is never retyped, so a caller after one name can stop once it has a type (or a declared one).
  const done = () => only !== undefined && types.has(only);
  walkGraphs(model.proto, (v) => {
    for (const n of v.graph.node) {
      if (done()) return;
      n.output.forEach((o, i) => {
        if (!o || types.has(o)) return;
        const t = inferFromNode(n, i, (x) => types.get(x));
        if (t) types.set(o, t);
      });
    }
  });
  return (name) => types.get(name);
}

const INT64_OUT = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin', 'NonMaxSuppression']);
const BOOL_OUT = new Set([
  'Equal',
  'Less',
  'Greater',
  'LessOrEqual',
  'GreaterOrEqual',
  'Not',
  'And',
  'Or',
  'Xor',
  'IsNaN',
  'IsInf',
]);

function inferFromNode(
  n: NodeProto,
  outIndex: number,
  typeOf: (name: string) => number | undefined,
): number | undefined {
  const attr = (k: string) => n.attribute.find((a) => a.name === k);
  if (INT64_OUT.has(n.opType)) return 7;
  if (BOOL_OUT.has(n.opType)) return 9;
  switch (n.opType) {
    case 'Cast':
      return Number(attr('to')?.i ?? 0) || undefined;
    case 'Constant':
      return attr('value')?.t?.dataType;
    case 'DequantizeLinear':
      return Number(attr('output_dtype')?.i ?? 0) || typeOf(n.input[1]);
    case 'QuantizeLinear':
      return (n.input[2] && typeOf(n.input[2])) || Number(attr('output_dtype')?.i ?? 0) || 2;
    case 'TopK':
      return outIndex === 1 ? 7 : typeOf(n.input[0]);
    case 'MaxPool':
      return outIndex === 1 ? 7 : typeOf(n.input[0]);
    case 'Where':
      return typeOf(n.input[1]);
    case 'ConstantOfShape':
      return attr('value')?.t?.dataType ?? 1;
    case 'If':
    case 'Loop':
    case 'Scan': {
      const body = n.attribute.flatMap(subgraphsOf)[0]?.graph;
      const o = body?.output[n.opType === 'Loop' ? outIndex + 1 : outIndex];
      return o?.type?.value.case === 'tensorType' ? o.type.value.value.elemType : undefined;
    }
  }
  return n.input[0] ? typeOf(n.input[0]) : undefined;
}

/**
 * Makes main-graph values graph outputs so a runtime returns them (activation capture). Each gets a ValueInfo
 * with its element type; throws 'unknown-type' when the type cannot be determined, 'not-found' for unknown names.
 */
export function addGraphOutputs(model: LoadedModel, names: string[]): void {
  const g = model.proto.graph!;
  const have = new Set(g.output.map((o) => o.name));
  const index = buildScopeIndex(model);
  const main = index.visits[0];
  const elemType = elemTypeResolver(model);
  for (const name of names) {
    if (have.has(name)) continue;
    if (!index.scopes.get(main)!.has(name))
      throw new OnnxError(
        'not-found',
        `'${name}' is not a value of the main graph (values inside subgraphs cannot be outputs)`,
      );
    const declared = [...g.valueInfo, ...g.input].find(
      (vi) => vi.name === name && vi.type?.value.case === 'tensorType',
    );
    const elem = elemType(name);
    if (!elem) throw new OnnxError('unknown-type', `cannot determine the element type of '${name}'`);
    const vi = declared ? create(ValueInfoProtoSchema, { name, type: declared.type }) : tensorValueInfo(name, elem);
    g.output.push(vi);
    have.add(name);
  }
}

/**
 * The nodes of `graph` that the values `outputs` depend on, in graph order. A node with subgraphs (If, Loop, Scan)
 * counts every name its subgraphs read as an input (an over-approximation of their outer-scope captures: safe, as it
 * only keeps more). ONNX Runtime runs every node of a graph whatever is fetched, so a graph cut to these runs less.
 */
export function liveNodes(graph: GraphProto, outputs: Iterable<string>): NodeProto[] {
  const producer = new Map<string, NodeProto>();
  for (const n of graph.node) for (const o of n.output) if (o) producer.set(o, n);
  const live = new Set<NodeProto>();
  const stack = [...outputs];
  while (stack.length) {
    const n = producer.get(stack.pop()!);
    if (!n || live.has(n)) continue;
    live.add(n);
    stack.push(...namesReadBy(n));
  }
  return graph.node.filter((n) => live.has(n));
}

/** Every name `node` reads: its inputs, and every name read inside its subgraphs (see liveNodes). */
export function namesReadBy(node: NodeProto): string[] {
  const names = node.input.filter((i) => i);
  for (const a of node.attribute)
    for (const { graph } of subgraphsOf(a)) for (const n of graph.node) names.push(...namesReadBy(n));
  return names;
}
