// `onnx-compress inspect MODEL [--json]`: what a model is made of (IR, opsets, I/O, ops, parameters) and every weight
// the compression methods could touch, with the reason when one cannot be.
import type { Command } from 'commander';
import type { TensorProto, ValueInfoProto } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { closeModel, loadModel } from '../../../packages/engine/onnx/model.js';
import type { LoadedModel } from '../../../packages/engine/onnx/model.js';
import { discoverWeights } from '../../../packages/engine/onnx/weights.js';
import { dtypeFromOnnx, elementCount, rawByteLength, tensorDtype } from '../../../packages/engine/onnx/tensor.js';
import { graphTensors, walkGraphs } from '../../../packages/engine/onnx/walk.js';

export interface ValueSummary {
  name: string;
  dtype: string;
  /** Numbers for fixed dims, strings for symbolic ones, null for unknown. */
  shape: (number | string | null)[] | null;
}

export interface InspectReport {
  path: string;
  irVersion: number;
  producer: string;
  opsets: { domain: string; version: number }[];
  inputs: ValueSummary[];
  outputs: ValueSummary[];
  ops: Record<string, number>;
  parameters: number;
  parameterBytes: number;
  parametersByDtype: Record<string, { count: number; bytes: number }>;
  weights: {
    name: string;
    op: string;
    node: string;
    graphPath: string;
    shape: number[];
    dtype: string;
    kAxis: number;
    nAxis: number;
    K: number;
    N: number;
    group?: number;
    location: string;
    via: string[];
    /** read/writeWeightMatrix can map it (a stored weight with a matrix layout). */
    readable: boolean;
    compressible: boolean;
    reason: string | null;
  }[];
}

function valueSummary(vi: ValueInfoProto): ValueSummary {
  const t = vi.type?.value;
  if (t?.case !== 'tensorType') return { name: vi.name, dtype: t?.case ?? 'unknown', shape: null };
  const shape = t.value.shape
    ? t.value.shape.dim.map((d) =>
        d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : null,
      )
    : null;
  let dtype = 'unknown';
  try {
    dtype = dtypeFromOnnx(t.value.elemType);
  } catch {
    dtype = `type ${t.value.elemType}`;
  }
  return { name: vi.name, dtype, shape };
}

export function inspectModel(model: LoadedModel): InspectReport {
  const g = model.proto.graph!;
  const ops: Record<string, number> = {};
  const byDtype: Record<string, { count: number; bytes: number }> = {};
  let parameters = 0;
  let parameterBytes = 0;
  const count = (t: TensorProto) => {
    const dtype = tensorDtype(t);
    const n = elementCount(t.dims);
    const bytes = dtype === 'string' ? 0 : rawByteLength(dtype, n);
    parameters += n;
    parameterBytes += bytes;
    const row = (byDtype[dtype] ??= { count: 0, bytes: 0 });
    row.count += n;
    row.bytes += bytes;
  };
  walkGraphs(model.proto, (v) => {
    for (const n of v.graph.node) {
      const key = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}:${n.opType}` : n.opType;
      ops[key] = (ops[key] ?? 0) + 1;
    }
    for (const t of graphTensors(v.graph)) count(t);
  });
  const initNames = new Set(g.initializer.map((t) => t.name));
  return {
    path: model.path ?? '',
    irVersion: Number(model.proto.irVersion),
    producer: [model.proto.producerName, model.proto.producerVersion].filter(Boolean).join(' '),
    opsets: model.proto.opsetImport.map((o) => ({ domain: o.domain || 'ai.onnx', version: Number(o.version) })),
    inputs: g.input.filter((i) => !initNames.has(i.name)).map(valueSummary),
    outputs: g.output.map(valueSummary),
    ops,
    parameters,
    parameterBytes,
    parametersByDtype: byDtype,
    weights: discoverWeights(model).map((w) => {
      const row: InspectReport['weights'][number] = {
        name: w.name,
        op: w.op,
        node: w.node,
        graphPath: w.graphPath,
        shape: w.shape,
        dtype: w.dtype,
        kAxis: w.kAxis,
        nAxis: w.nAxis,
        K: w.K,
        N: w.N,
        location: w.location,
        via: w.via,
        readable: w.readable,
        compressible: w.compressible,
        reason: w.reason ?? null,
      };
      if (w.group !== undefined) row.group = w.group;
      return row;
    }),
  };
}

const fmtInt = (n: number) => n.toLocaleString('en-US');
function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}
const fmtShape = (s: ValueSummary['shape']) =>
  s ? `[${s.map((d) => (d === null ? '?' : d)).join(', ')}]` : '(unknown)';

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map(
      (r) =>
        '  ' +
        r
          .map((cell, c) => cell.padEnd(widths[c]))
          .join('  ')
          .trimEnd(),
    )
    .join('\n');
}

export function formatReport(r: InspectReport): string {
  const lines: string[] = [];
  lines.push(`model       ${r.path}`);
  lines.push(`IR version  ${r.irVersion}${r.producer ? `  (producer: ${r.producer})` : ''}`);
  lines.push(`opsets      ${r.opsets.map((o) => `${o.domain} ${o.version}`).join(', ')}`);
  lines.push('inputs');
  lines.push(table(r.inputs.map((v) => [v.name, v.dtype, fmtShape(v.shape)])));
  lines.push('outputs');
  lines.push(table(r.outputs.map((v) => [v.name, v.dtype, fmtShape(v.shape)])));
  const ops = Object.entries(r.ops).sort((a, b) => b[1] - a[1]);
  lines.push(`ops         ${ops.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  lines.push(`parameters  ${fmtInt(r.parameters)} (${fmtBytes(r.parameterBytes)})`);
  for (const [d, v] of Object.entries(r.parametersByDtype))
    lines.push(`  ${d.padEnd(10)} ${fmtInt(v.count).padStart(14)}  ${fmtBytes(v.bytes)}`);
  const ok = r.weights.filter((w) => w.compressible).length;
  lines.push(`weights     ${r.weights.length} found, ${ok} compressible`);
  if (r.weights.length)
    lines.push(
      table([
        ['name', 'op', 'node', 'shape', 'dtype', 'K', 'N', 'kAxis', 'location', 'compressible'],
        ...r.weights.map((w) => [
          w.graphPath ? `${w.graphPath}/${w.name}` : w.name,
          w.group && w.group > 1 ? `${w.op}/g${w.group}` : w.op,
          w.node,
          `[${w.shape.join(', ')}]`,
          w.dtype,
          String(w.K),
          String(w.N),
          String(w.kAxis),
          w.via.length ? `${w.location} via ${w.via.join('>')}` : w.location,
          w.compressible ? 'yes' : `no: ${w.reason}`,
        ]),
      ]),
    );
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('inspect')
    .description('show IR/opsets, inputs/outputs, op histogram, parameters and the weights the methods can compress')
    .argument('<model>', 'path to an .onnx file (external data is read from its folder)')
    .option('--json', 'print one JSON document instead of text')
    .action(async (file: string, opts: { json?: boolean }) => {
      const model = await loadModel(file);
      try {
        const report = inspectModel(model);
        process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report) + '\n');
      } finally {
        closeModel(model);
      }
    });
}
