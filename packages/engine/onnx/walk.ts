// Walking every graph of a model: the main graph, subgraphs held in node attributes (If/Loop/Scan bodies, at any
// depth) and the bodies of model-local functions. Each graph gets a stable path: '' for the main graph, else
// '<node>/<attribute>' segments, e.g. 'If_3/then_branch' or 'If_3/then_branch/Loop_1/body'.
import type { AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto } from './gen/onnx_pb.js';
import { OnnxError } from './errors.js';

/** Deepest subgraph nesting accepted; real models nest a handful of levels. */
export const MAX_GRAPH_DEPTH = 64;

export interface GraphVisit {
  graph: GraphProto;
  path: string;
  depth: number;
  parent?: GraphVisit;
  /** The node and attribute holding this subgraph. */
  owner?: { node: NodeProto; attribute: string };
}

/** Key naming a node inside its graph: its name, or `<opType>#<index>` when unnamed. */
export function nodeKey(node: NodeProto, index: number): string {
  return node.name || `${node.opType}#${index}`;
}

export function subgraphsOf(a: AttributeProto): { graph: GraphProto; label: string }[] {
  const out: { graph: GraphProto; label: string }[] = [];
  if (a.g) out.push({ graph: a.g, label: a.name });
  a.graphs.forEach((g, i) => out.push({ graph: g, label: `${a.name}[${i}]` }));
  return out;
}

/** Depth-first over the main graph and every nested subgraph (functions excluded). */
export function walkGraphs(model: ModelProto, visit: (v: GraphVisit) => void): void {
  if (!model.graph) return;
  walkFrom({ graph: model.graph, path: '', depth: 0 }, visit);
}

export function walkFrom(root: GraphVisit, visit: (v: GraphVisit) => void): void {
  const stack: GraphVisit[] = [root];
  while (stack.length) {
    const v = stack.pop()!;
    if (v.depth > MAX_GRAPH_DEPTH)
      throw new OnnxError('graph-too-deep', `subgraphs nest deeper than ${MAX_GRAPH_DEPTH} levels (at '${v.path}')`);
    visit(v);
    const children: GraphVisit[] = [];
    v.graph.node.forEach((node, i) => {
      for (const a of node.attribute) {
        if (!a.g && !a.graphs.length) continue; // most attributes hold no graph: skip the list built per attribute
        for (const { graph, label } of subgraphsOf(a)) {
          const key = nodeKey(node, i);
          children.push({
            graph,
            path: v.path ? `${v.path}/${key}/${label}` : `${key}/${label}`,
            depth: v.depth + 1,
            parent: v,
            owner: { node, attribute: label },
          });
        }
      }
    });
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
  }
}

export function findGraph(model: ModelProto, graphPath: string): GraphVisit | undefined {
  let found: GraphVisit | undefined;
  walkGraphs(model, (v) => {
    if (!found && v.path === graphPath) found = v;
  });
  return found;
}

/** Every TensorProto in a node's attributes (value tensors, tensor lists, sparse values/indices); not subgraphs. */
export function attributeTensors(node: NodeProto): TensorProto[] {
  const out: TensorProto[] = [];
  for (const a of node.attribute) {
    if (a.t) out.push(a.t);
    out.push(...a.tensors);
    for (const s of [a.sparseTensor, ...a.sparseTensors]) {
      if (s?.values) out.push(s.values);
      if (s?.indices) out.push(s.indices);
    }
  }
  return out;
}

/** Every TensorProto stored in a graph itself: initializers, sparse initializers, node attributes. */
export function graphTensors(graph: GraphProto): TensorProto[] {
  const out: TensorProto[] = [...graph.initializer];
  for (const s of graph.sparseInitializer) {
    if (s.values) out.push(s.values);
    if (s.indices) out.push(s.indices);
  }
  for (const n of graph.node) out.push(...attributeTensors(n));
  return out;
}

/** Every graph in the model including function bodies and training graphs, as (graph-like node list) visits. */
export function allNodeLists(model: ModelProto, visit: (nodes: NodeProto[], where: string) => void): void {
  walkGraphs(model, (v) => visit(v.graph.node, v.path || 'main graph'));
  for (const f of model.functions) {
    visit(f.node, `function ${f.domain}:${f.name}`);
    for (const n of f.node)
      for (const a of n.attribute)
        for (const { graph, label } of subgraphsOf(a))
          walkFrom({ graph, path: `${f.name}/${n.name}/${label}`, depth: 1 }, (v) =>
            visit(v.graph.node, `function ${f.name} ${v.path}`),
          );
  }
  for (const t of model.trainingInfo)
    for (const g of [t.initialization, t.algorithm])
      if (g) walkFrom({ graph: g, path: 'training', depth: 0 }, (v) => visit(v.graph.node, `training ${v.path}`));
}
