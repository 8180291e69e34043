// Whether a dataset's tensors (from its header summary) can feed a model's inputs: every model input present, same
// dtype and rank, fixed dimensions equal, one shared sample count. Every problem is listed.
import type { ModelInspection, TensorSummary } from './inspect.js';

type ModelInput = ModelInspection['inputs'][number];

const LABELS = 'labels';

export function checkDatasetFits(format: string, tensors: TensorSummary[], inputs: ModelInput[]): string[] {
  const problems: string[] = [];
  // A single array file (.npy, .pb) feeds a single-input model whatever its name; .npz arrays go by name.
  const single = format !== 'npz' && tensors.length === 1 && inputs.length === 1;
  const byName = new Map(tensors.map((t) => [t.name, t]));
  if (single && !byName.has(inputs[0].name)) {
    byName.set(inputs[0].name, tensors[0]);
  }
  const samples = new Set<number>();
  for (const input of inputs) {
    const t = byName.get(input.name);
    if (!t) {
      problems.push(`no tensor for model input "${input.name}"`);
      continue;
    }
    if (t.dtype !== input.dtype) problems.push(`"${input.name}": dtype ${t.dtype}, the model wants ${input.dtype}`);
    if (input.shape) {
      if (t.shape.length !== input.shape.length) {
        problems.push(`"${input.name}": rank ${t.shape.length}, the model wants ${input.shape.length}`);
      } else {
        // Dimension 0 is the sample axis: any count is fine there, batches are cut from it.
        input.shape.forEach((d, i) => {
          if (i > 0 && typeof d === 'number' && d > 0 && t.shape[i] !== d) {
            problems.push(`"${input.name}": dimension ${i} is ${t.shape[i]}, the model wants ${d}`);
          }
        });
      }
    }
    if (t.shape.length) samples.add(t.shape[0]);
  }
  const known = new Set([...inputs.map((i) => i.name), LABELS]);
  if (!single) {
    for (const t of tensors) if (!known.has(t.name)) problems.push(`tensor "${t.name}" is not a model input`);
  }
  const labels = byName.get(LABELS);
  if (labels?.shape.length) samples.add(labels.shape[0]);
  if (samples.size > 1) problems.push(`tensors disagree on the sample count (${[...samples].join(' vs ')})`);
  if (samples.has(0)) problems.push('the dataset holds no samples (dimension 0 is 0)');
  return problems;
}
