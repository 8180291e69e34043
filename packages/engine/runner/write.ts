// Stage "write": the compressed model goes to outputDir (external data when large or asked for; then the model's
// spill file of rewritten weights, made in outputDir, becomes that external data rather than being copied into it),
// and the weight counts after compression are taken. Once written, the in-memory model is closed: evaluation and
// latency read the file, so the job does not hold the JS copy of the weights while ONNX Runtime holds its own.
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError, type JobArtifact } from '../job-parts.js';
import { writeArtifact } from './artifacts.js';
import { closeModel, saveModel } from '../onnx/model.js';
import { weightCounts } from '../report/sizes.js';
import type { RunState } from './state.js';

export async function writeOutput(s: RunState): Promise<void> {
  await s.clock.stage('write', async () => {
    s.progress.emit('write', 0, { message: 'writing the compressed model' });
    const { inputs, recipe } = s;
    await mkdir(inputs.outputDir, { recursive: true });
    const outName = inputs.outputName ?? 'model.onnx';
    if (/[\\/]/.test(outName) || outName === '' || outName === '.' || outName === '..') {
      throw new InputError('bad-output-name', `outputName "${outName}" must be a plain file name`);
    }
    const outPath = (s.outPath = join(inputs.outputDir, outName));
    // The model is closed right below: its spill file, in outputDir, may become the output's external data.
    const saveOpts = {
      adoptSpill: true,
      ...(recipe.externalData === undefined ? {} : { externalData: recipe.externalData }),
    };
    const saved = await saveModel(s.model!, outPath, saveOpts);
    const artifacts: JobArtifact[] = [{ name: outName, path: outPath, sizeBytes: saved.modelBytes }];
    if (saved.externalBytes > 0) {
      const dataPath = `${outPath}.data`;
      artifacts.push({ name: `${outName}.data`, path: dataPath, sizeBytes: (await stat(dataPath)).size });
    }
    for (const f of s.result!.files ?? []) artifacts.push(await writeArtifact(inputs.outputDir, f.name, f.content));
    s.artifacts = artifacts;
    s.outputBytes = artifacts.reduce((t, a) => t + a.sizeBytes, 0);
    s.countsAfter = countsAfter(s);
    closeModel(s.model!);
    s.model = undefined;
    s.progress.emit('write', 1);
  });
}

/**
 * Parameters and non-zeros after compression. A written layer counts the weights whose value — dequantized, for
 * quantized layers — is exactly 0, as the method reported it (its row's sparsity): graph-changing methods replaced
 * the stored tensor (MatMulNBits, DequantizeLinear codes, packed forms), so a scan of the original name would find
 * nothing and count every weight non-zero. Layers left as they were are scanned from the file contents.
 */
function countsAfter(s: RunState): { parameters: number; nonZeros: number } {
  const result = s.result!;
  const all = s.all!;
  const known = new Map<string, number>();
  for (const l of result.layers) {
    if (typeof l.sparsity === 'number' && !l.skipped) known.set(l.name, l.sparsity);
  }
  const scanned = weightCounts(
    s.model!,
    all.filter((w) => !known.has(w.name)),
  );
  const counts = { parameters: scanned.parameters, nonZeros: scanned.nonZeros };
  for (const w of all) {
    const sp = known.get(w.name);
    if (sp === undefined) continue;
    const count = w.shape.reduce((a, b) => a * b, 1);
    counts.parameters += count;
    counts.nonZeros += Math.round(count * (1 - sp));
  }
  return counts;
}
