// The work of `onnx-compress inspect MODEL [--json]`: what a model is made of (IR, opsets, I/O, ops, parameters) and every weight
// the compression methods could touch, with the reason when one cannot be.
import {
  closeModel,
  inspectModel,
  type InspectReport,
  loadModel,
  type ValueSummary,
} from '../../../packages/engine/onnx/index.js';

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
          w.readable ? String(w.K) : '—',
          w.readable ? String(w.N) : '—',
          String(w.kAxis),
          w.via.length ? `${w.location} via ${w.via.join('>')}` : w.location,
          w.compressible ? 'yes' : `no: ${w.reason}`,
        ]),
      ]),
    );
  const other = r.otherOperands ?? [];
  if (other.length) {
    lines.push(
      `not weights ${other.length} MatMul/Gemm/Conv operands trace back to a stored tensor but are no weight matrix`,
    );
    lines.push(table(other.map((o) => [o.name, o.op, o.node, `[${o.shape.join(', ')}]`, o.reason])));
  }
  return lines.join('\n');
}

/** Runs `inspect`: prints the report as text, or as one JSON document. */
export async function inspect(file: string, opts: { json?: boolean }): Promise<void> {
  const model = await loadModel(file);
  try {
    const report = inspectModel(model);
    process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report) + '\n');
  } finally {
    closeModel(model);
  }
}
