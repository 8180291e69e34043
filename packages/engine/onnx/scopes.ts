// Name resolution across nested graphs: every value name maps to its definition (initializer, Constant node, graph
// input, node output) in the innermost enclosing graph that defines it; every use is recorded against that
// definition. Weight discovery and graph edits use this to follow a weight to its consumers and back.
import type { GraphProto, NodeProto, SparseTensorProto, TensorProto } from './gen/onnx_pb.js';
import type { LoadedModel } from './loaded.js';
import type { GraphVisit } from './walk.js';
import { walkGraphs } from './walk.js';

export interface Def {
  kind: 'initializer' | 'constant' | 'sparse' | 'input' | 'node';
  name: string;
  graphPath: string;
  graph: GraphProto;
  tensor?: TensorProto;
  sparse?: SparseTensorProto;
  node?: NodeProto;
  nodeIndex?: number;
  /** Initializer that is also listed as a graph input: a default the caller may override at run time. */
  overridable?: boolean;
}

export interface Use {
  /** Consuming node; undefined when the value is a graph output. */
  node?: NodeProto;
  nodeIndex: number;
  inputIndex: number;
  graphPath: string;
  visit: GraphVisit;
}

export interface ScopeIndex {
  visits: GraphVisit[];
  scopes: Map<GraphVisit, Map<string, Def>>;
  uses: Map<Def, Use[]>;
  resolve(visit: GraphVisit, name: string): Def | undefined;
}

export function buildScopeIndex(model: LoadedModel): ScopeIndex {
  const visits: GraphVisit[] = [];
  walkGraphs(model.proto, (v) => visits.push(v));
  const scopes = new Map<GraphVisit, Map<string, Def>>();
  for (const v of visits) {
    const scope = new Map<string, Def>();
    const g = v.graph;
    const base = { graphPath: v.path, graph: g };
    const inputs = new Set<string>();
    for (const i of g.input) {
      inputs.add(i.name);
      scope.set(i.name, { kind: 'input', name: i.name, ...base });
    }
    for (const t of g.initializer)
      scope.set(t.name, { kind: 'initializer', name: t.name, tensor: t, overridable: inputs.has(t.name), ...base });
    for (const s of g.sparseInitializer) {
      const name = s.values?.name ?? '';
      if (name) scope.set(name, { kind: 'sparse', name, sparse: s, overridable: inputs.has(name), ...base });
    }
    g.node.forEach((n, i) => {
      const value =
        n.opType === 'Constant' && (n.domain === '' || n.domain === 'ai.onnx') ? constantTensor(n) : undefined;
      for (const o of n.output) {
        if (!o) continue;
        if (value) scope.set(o, { kind: 'constant', name: o, tensor: value, node: n, nodeIndex: i, ...base });
        else scope.set(o, { kind: 'node', name: o, node: n, nodeIndex: i, ...base });
      }
    });
    scopes.set(v, scope);
  }
  const resolve = (visit: GraphVisit, name: string): Def | undefined => {
    for (let v: GraphVisit | undefined = visit; v; v = v.parent) {
      const d = scopes.get(v)?.get(name);
      if (d) return d;
    }
    return undefined;
  };
  const uses = new Map<Def, Use[]>();
  const addUse = (d: Def | undefined, u: Use) => {
    if (!d) return;
    const list = uses.get(d);
    if (list) list.push(u);
    else uses.set(d, [u]);
  };
  for (const v of visits) {
    v.graph.node.forEach((n, ni) =>
      n.input.forEach((name, ii) => {
        if (name) addUse(resolve(v, name), { node: n, nodeIndex: ni, inputIndex: ii, graphPath: v.path, visit: v });
      }),
    );
    v.graph.output.forEach((o, oi) =>
      addUse(resolve(v, o.name), { nodeIndex: -1, inputIndex: oi, graphPath: v.path, visit: v }),
    );
  }
  return { visits, scopes, uses, resolve };
}

/** The tensor of a Constant node's `value` attribute (other value_* forms are scalars/lists, never weights). */
export function constantTensor(n: NodeProto): TensorProto | undefined {
  return n.attribute.find((a) => a.name === 'value' && a.t)?.t;
}
