// Thread side of a compress job: the one place the service calls the engine (runRecipe). Runs inside a worker
// thread started by processor.ts; gets plain data, returns plain data.
import type { JobInputs, JobProgress, JobResult } from '../../packages/engine/job.js';
import type { Recipe } from '../../packages/engine/recipe.js';
import { runRecipe } from '../../packages/engine/run.js';

export interface CompressArgs {
  recipe: Recipe;
  inputs: JobInputs;
  executionProviders: ('cuda' | 'cpu')[];
  tmpDir: string;
}

export async function runCompression(
  args: CompressArgs,
  ctx: { signal: AbortSignal; progress: (p: JobProgress) => void },
): Promise<JobResult> {
  return runRecipe(args.recipe, args.inputs, {
    onProgress: ctx.progress,
    signal: ctx.signal,
    executionProviders: args.executionProviders,
    tmpDir: args.tmpDir,
  });
}
