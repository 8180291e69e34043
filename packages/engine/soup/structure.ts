// Are two models the same network? Soup ingredients must have the same graph (op sequence, wiring, attributes), the
// same inputs/outputs and the same tensors (names, dtypes, shapes), or averaging them by name means nothing. This
// compares the protobuf structure only; tensor values are read and compared by the soup method (they may be external).
import {
  AttributeProto_AttributeType as AttrType,
  TensorProto_DataType as DT,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type TypeProto,
  type ValueInfoProto,
} from '../onnx/gen/onnx_pb.js';

export interface StructureDifference {
  /** Where, e.g. `graph.node[3] (MatMul "fc2")` or `graph.initializer "fc1.weight"`. */
  where: string;
  /** What differs, with both sides: `shape [64, 16] vs [32, 16]`. */
  message: string;
}

/** Data types whose tensors a soup averages (everything else must be identical across ingredients). */
export const AVERAGED_DTYPES: ReadonlySet<number> = new Set([DT.FLOAT, DT.FLOAT16, DT.BFLOAT16, DT.DOUBLE]);

const dtypeName = (d: number) => DT[d] ?? `dtype ${d}`;
const shapeText = (dims: readonly bigint[]) => `[${dims.join(', ')}]`;

class Collector {
  readonly out: StructureDifference[] = [];
  constructor(readonly limit: number) {}
  get full() {
    return this.out.length >= this.limit;
  }
  add(where: string, message: string) {
    if (!this.full) this.out.push({ where, message });
  }
}

/**
 * Lists structural differences between two models (at most `limit`, in graph order; empty when they are the same
 * network). Node names and doc strings are ignored: they are labels, not structure.
 */
export function compareStructure(a: ModelProto, b: ModelProto, limit = 20): StructureDifference[] {
  const c = new Collector(limit);
  const opsets = (m: ModelProto) =>
    new Map(m.opsetImport.map((o) => [o.domain === 'ai.onnx' ? '' : o.domain, o.version] as const));
  const oa = opsets(a);
  const ob = opsets(b);
  for (const domain of new Set([...oa.keys(), ...ob.keys()])) {
    if (oa.get(domain) !== ob.get(domain)) {
      c.add(
        `opset_import "${domain || 'ai.onnx'}"`,
        `version ${oa.get(domain) ?? 'absent'} vs ${ob.get(domain) ?? 'absent'}`,
      );
    }
  }
  if (!a.graph || !b.graph) {
    if (!a.graph !== !b.graph) c.add('graph', `${a.graph ? 'present' : 'absent'} vs ${b.graph ? 'present' : 'absent'}`);
  } else {
    compareGraph(a.graph, b.graph, 'graph', c);
  }
  if (a.functions.length !== b.functions.length) {
    c.add('functions', `${a.functions.length} local functions vs ${b.functions.length}`);
  } else {
    a.functions.forEach((fa, i) => {
      const fb = b.functions[i];
      const where = `functions[${i}] "${fa.domain}:${fa.name}"`;
      if (fa.name !== fb.name || fa.domain !== fb.domain) {
        c.add(where, `function ${fa.domain}:${fa.name} vs ${fb.domain}:${fb.name}`);
      }
      compareList(fa.input, fb.input, `${where} inputs`, c);
      compareList(fa.output, fb.output, `${where} outputs`, c);
      compareNodes(fa.node, fb.node, where, c);
    });
  }
  return c.out;
}

function compareList(a: readonly string[], b: readonly string[], where: string, c: Collector): void {
  if (a.length !== b.length || a.some((x, i) => x !== b[i]))
    c.add(where, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
}

function typeText(t: TypeProto | undefined): string {
  if (!t) return 'untyped';
  if (t.value.case === 'tensorType' || t.value.case === 'sparseTensorType') {
    const tt = t.value.value;
    const dims = tt.shape?.dim.map((d) =>
      d.value.case === 'dimValue' ? String(d.value.value) : d.value.case === 'dimParam' ? d.value.value : '?',
    );
    return `${t.value.case === 'sparseTensorType' ? 'sparse ' : ''}${dtypeName(tt.elemType)}${dims ? `[${dims.join(', ')}]` : ''}`;
  }
  return t.value.case ?? 'unknown type';
}

function compareValueInfos(a: ValueInfoProto[], b: ValueInfoProto[], where: string, c: Collector): void {
  if (a.length !== b.length) {
    c.add(
      where,
      `${a.length} vs ${b.length} (${a.map((v) => v.name).join(', ')} vs ${b.map((v) => v.name).join(', ')})`,
    );
    return;
  }
  a.forEach((va, i) => {
    const vb = b[i];
    if (va.name !== vb.name) c.add(`${where}[${i}]`, `name "${va.name}" vs "${vb.name}"`);
    else if (typeText(va.type) !== typeText(vb.type)) {
      c.add(`${where}[${i}] "${va.name}"`, `type ${typeText(va.type)} vs ${typeText(vb.type)}`);
    }
  });
}

function compareTensorHeader(ta: TensorProto, tb: TensorProto, where: string, c: Collector): void {
  if (ta.dataType !== tb.dataType) c.add(where, `dtype ${dtypeName(ta.dataType)} vs ${dtypeName(tb.dataType)}`);
  if (shapeText(ta.dims) !== shapeText(tb.dims)) c.add(where, `shape ${shapeText(ta.dims)} vs ${shapeText(tb.dims)}`);
}

function compareGraph(a: GraphProto, b: GraphProto, where: string, c: Collector): void {
  compareValueInfos(a.input, b.input, `${where}.input`, c);
  compareValueInfos(a.output, b.output, `${where}.output`, c);
  const ia = new Map(a.initializer.map((t) => [t.name, t]));
  const ib = new Map(b.initializer.map((t) => [t.name, t]));
  for (const [name, ta] of ia) {
    const tb = ib.get(name);
    if (!tb) c.add(`${where}.initializer "${name}"`, 'present vs missing');
    else compareTensorHeader(ta, tb, `${where}.initializer "${name}"`, c);
  }
  for (const name of ib.keys()) if (!ia.has(name)) c.add(`${where}.initializer "${name}"`, 'missing vs present');
  if (a.sparseInitializer.length !== b.sparseInitializer.length) {
    c.add(`${where}.sparse_initializer`, `${a.sparseInitializer.length} vs ${b.sparseInitializer.length} tensors`);
  }
  compareNodes(a.node, b.node, where, c);
}

function nodeLabel(n: NodeProto, i: number, where: string): string {
  return `${where}.node[${i}] (${n.domain ? `${n.domain}:` : ''}${n.opType}${n.name ? ` "${n.name}"` : ''})`;
}

function compareNodes(a: NodeProto[], b: NodeProto[], where: string, c: Collector): void {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n && !c.full; i++) {
    const na = a[i];
    const nb = b[i];
    const label = nodeLabel(na, i, where);
    if (na.opType !== nb.opType || na.domain !== nb.domain) {
      c.add(
        label,
        `op ${na.domain ? `${na.domain}:` : ''}${na.opType} vs ${nb.domain ? `${nb.domain}:` : ''}${nb.opType}`,
      );
      continue;
    }
    compareList(na.input, nb.input, `${label} inputs`, c);
    compareList(na.output, nb.output, `${label} outputs`, c);
    compareAttributes(na.attribute, nb.attribute, label, c);
  }
  if (a.length !== b.length) {
    const extra = (a.length > b.length ? a : b).slice(n, n + 3).map((x) => x.opType);
    c.add(`${where}.node`, `${a.length} vs ${b.length} nodes (first extra: ${extra.join(', ')})`);
  }
}

function compareAttributes(a: AttributeProto[], b: AttributeProto[], label: string, c: Collector): void {
  const mb = new Map(b.map((x) => [x.name, x]));
  for (const xa of a) {
    const xb = mb.get(xa.name);
    const where = `${label} attribute "${xa.name}"`;
    if (!xb) {
      c.add(where, 'present vs missing');
      continue;
    }
    if (xa.type !== xb.type) {
      c.add(where, `type ${AttrType[xa.type]} vs ${AttrType[xb.type]}`);
      continue;
    }
    if (xa.refAttrName !== xb.refAttrName) c.add(where, `ref "${xa.refAttrName}" vs "${xb.refAttrName}"`);
    switch (xa.type) {
      case AttrType.TENSOR:
        if (xa.t && xb.t) compareTensorHeader(xa.t, xb.t, where, c);
        break;
      case AttrType.TENSORS:
        if (xa.tensors.length !== xb.tensors.length)
          c.add(where, `${xa.tensors.length} vs ${xb.tensors.length} tensors`);
        else xa.tensors.forEach((t, i) => compareTensorHeader(t, xb.tensors[i], `${where}[${i}]`, c));
        break;
      case AttrType.GRAPH:
        if (xa.g && xb.g) compareGraph(xa.g, xb.g, `${where}.g`, c);
        break;
      case AttrType.GRAPHS:
        if (xa.graphs.length !== xb.graphs.length) c.add(where, `${xa.graphs.length} vs ${xb.graphs.length} graphs`);
        else xa.graphs.forEach((g, i) => compareGraph(g, xb.graphs[i], `${where}[${i}]`, c));
        break;
      default: {
        const va = scalarAttrText(xa);
        const vb = scalarAttrText(xb);
        if (va !== vb) c.add(where, `${va} vs ${vb}`);
      }
    }
  }
  for (const xb of b)
    if (!a.some((x) => x.name === xb.name)) c.add(`${label} attribute "${xb.name}"`, 'missing vs present');
}

function scalarAttrText(x: AttributeProto): string {
  const dec = (s: Uint8Array) => JSON.stringify(new TextDecoder().decode(s));
  switch (x.type) {
    case AttrType.FLOAT:
      return String(x.f);
    case AttrType.INT:
      return String(x.i);
    case AttrType.STRING:
      return dec(x.s);
    case AttrType.FLOATS:
      return `[${x.floats.join(', ')}]`;
    case AttrType.INTS:
      return `[${x.ints.join(', ')}]`;
    case AttrType.STRINGS:
      return `[${x.strings.map(dec).join(', ')}]`;
    case AttrType.TYPE_PROTO:
      return typeText(x.tp);
    case AttrType.TYPE_PROTOS:
      return `[${x.typeProtos.map(typeText).join(', ')}]`;
    case AttrType.SPARSE_TENSOR:
      return `sparse ${x.sparseTensor?.dims.join('x') ?? ''}`;
    case AttrType.SPARSE_TENSORS:
      return `${x.sparseTensors.length} sparse tensors`;
    default:
      return AttrType[x.type] ?? String(x.type);
  }
}

/** One line per difference, for error messages. */
export function formatDifferences(diffs: readonly StructureDifference[], max = 5): string {
  const shown = diffs.slice(0, max).map((d) => `${d.where}: ${d.message}`);
  if (diffs.length > max) shown.push(`… and ${diffs.length - max} more`);
  return shown.join('; ');
}
