// Load-time checks that turn malformed or hostile models into typed errors before any code trusts them:
// structure (a graph and opsets), subgraph depth, every tensor's dims against its stored bytes (no allocation),
// every external reference (containment + range), and local functions that call themselves.
import type { FunctionProto, ModelProto, NodeProto } from './gen/onnx_pb.js';
import { OnnxError } from './errors.js';
import type { LoadedModel } from './loaded.js';
import { checkTensorData } from './tensor.js';
import { attributeTensors, graphTensors, subgraphsOf, walkFrom, walkGraphs } from './walk.js';

export function validateModel(model: LoadedModel): void {
  const proto = model.proto;
  if (!proto.graph)
    throw new OnnxError('not-a-model', 'the file decodes as protobuf but holds no graph: it is not an ONNX model');
  if (proto.irVersion < 1n || proto.opsetImport.length === 0)
    throw new OnnxError(
      'not-a-model',
      `not an ONNX model (ir_version ${proto.irVersion}, ${proto.opsetImport.length} opset imports); truncated or another format?`,
    );
  walkGraphs(proto, (v) => {
    for (const t of graphTensors(v.graph)) checkTensorData(model, t);
  });
  for (const f of proto.functions)
    visitFunctionNodes(f, (n) => {
      for (const t of attributeTensors(n)) checkTensorData(model, t);
    });
  for (const ti of proto.trainingInfo)
    for (const g of [ti.initialization, ti.algorithm])
      if (g)
        walkFrom({ graph: g, path: 'training', depth: 0 }, (v) => {
          for (const t of graphTensors(v.graph)) checkTensorData(model, t);
        });
  checkFunctionRecursion(proto);
}

function visitFunctionNodes(f: FunctionProto, visit: (n: NodeProto) => void): void {
  for (const n of f.node) {
    visit(n);
    for (const a of n.attribute)
      for (const { graph } of subgraphsOf(a))
        walkFrom({ graph, path: f.name, depth: 1 }, (v) => v.graph.node.forEach(visit));
  }
}

function functionKey(domain: string, name: string, overload: string): string {
  return `${domain}\u0000${name}\u0000${overload}`;
}

/** Local functions form a call graph; ONNX forbids cycles (a runtime would expand them forever). */
export function checkFunctionRecursion(proto: ModelProto): void {
  if (proto.functions.length === 0) return;
  const byKey = new Map<string, FunctionProto>();
  for (const f of proto.functions) byKey.set(functionKey(f.domain, f.name, f.overload), f);
  const calls = new Map<string, string[]>();
  for (const [key, f] of byKey) {
    const out: string[] = [];
    visitFunctionNodes(f, (n) => {
      const k = functionKey(n.domain, n.opType, n.overload);
      if (byKey.has(k)) out.push(k);
    });
    calls.set(key, out);
  }
  // Iterative DFS with colours: grey = on the current path; meeting a grey node is a cycle.
  const colour = new Map<string, 1 | 2>();
  const label = (k: string) => k.split('\u0000').slice(0, 2).filter(Boolean).join(':');
  for (const start of byKey.keys()) {
    if (colour.has(start)) continue;
    const path: string[] = [start];
    const iters: number[] = [0];
    colour.set(start, 1);
    while (path.length) {
      const top = path[path.length - 1];
      const next = calls.get(top)!;
      const i = iters[iters.length - 1]++;
      if (i >= next.length) {
        colour.set(top, 2);
        path.pop();
        iters.pop();
        continue;
      }
      const callee = next[i];
      const c = colour.get(callee);
      if (c === 1) {
        const cycle = [...path.slice(path.indexOf(callee)), callee].map(label).join(' -> ');
        throw new OnnxError('function-recursion', `local function calls itself: ${cycle}`);
      }
      if (c === undefined) {
        colour.set(callee, 1);
        path.push(callee);
        iters.push(0);
      }
    }
  }
}
