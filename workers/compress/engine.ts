// Thread side of a compress job: the one place the service calls the engine (runRecipe). Runs inside a worker
// thread started by processor.ts; gets plain data, returns plain data.
import {
  type JobInputs,
  type JobProgress,
  type JobResult,
  type Recipe,
  runRecipe,
} from '../../packages/engine/index.js';

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
