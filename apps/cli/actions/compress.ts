// `onnx-compress compress MODEL --recipe RECIPE.json [--calibration FILE] [--eval FILE] -o OUT.onnx
// [--report REPORT.json]`: runs one compression job locally with the engine's runRecipe — the same function and the
// same recipe JSON the service uses. A progress bar on a terminal, plain lines otherwise; any error exits non-zero
// with one clear line (main.ts prints it).
//
// This module is what runs between argument parsing and the first progress line, so it imports nothing heavy at
// the top: the recipe schema (TypeBox, every method's module), the engine and ONNX Runtime are loaded after the
// load stage's first line is printed (bench/startup.bench.ts measures that line: target ≤ 0.5 s from process start).
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError, type JobProgress, type JobReport } from '../../../packages/engine/job.js';

export interface CompressOptions {
  recipe: string;
  calibration?: string;
  eval?: string;
  output: string;
  report?: string;
  device: 'cpu' | 'cuda';
  progress?: boolean;
}

/** The recipe file as JSON (not yet checked against the schema): unreadable or malformed files fail here. */
async function readRecipeJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new InputError('recipe-unreadable', `cannot read recipe ${path}: ${(e as NodeJS.ErrnoException).code}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError('recipe-not-json', `recipe ${path} is not valid JSON: ${(e as Error).message}`);
  }
  return json;
}

/** Parses the recipe against the schema; loads the recipe module (TypeBox and every method) on the first call. */
async function parseRecipeJson(path: string, json: unknown) {
  const { parseRecipe, RecipeError } = await import('../../../packages/engine/index.js');
  try {
    return parseRecipe(json);
  } catch (e) {
    if (e instanceof RecipeError) throw new InputError('bad-recipe', `${path}: ${e.message}`);
    throw e;
  }
}

export async function readRecipeFile(path: string) {
  return parseRecipeJson(path, await readRecipeJson(path));
}

/** Progress on a TTY: one bar; elsewhere: a line per stage change and per layer, at most one a second otherwise. */
async function progressPrinter(tty: boolean): Promise<{ update(p: JobProgress): void; stop(): void }> {
  if (tty) {
    const { default: cliProgress } = await import('cli-progress');
    const bar = new cliProgress.SingleBar(
      { format: ' {bar} {percentage}% | {stage} {detail}', hideCursor: true, clearOnComplete: false },
      cliProgress.Presets.shades_classic,
    );
    bar.start(100, 0, { stage: 'load', detail: '' });
    return {
      update: (p) =>
        bar.update(Math.round(p.fraction * 100), {
          stage: p.stage,
          detail: p.layer ? `layer ${p.layer.index + 1}/${p.layer.total} ${p.layer.name}` : (p.message ?? ''),
        }),
      stop: () => bar.stop(),
    };
  }
  let lastStage = '';
  let lastLayer = '';
  let lastAt = 0;
  let lastLine = '';
  return {
    update(p) {
      const layer = p.layer ? `${p.layer.index + 1}/${p.layer.total} ${p.layer.name}` : '';
      const now = Date.now();
      if (p.stage === lastStage && layer === lastLayer && now - lastAt < 1000) return;
      const detail = layer ? `layer ${layer}` : (p.message ?? '');
      const line = `[${(p.fraction * 100).toFixed(0).padStart(3)}%] ${p.stage}${detail ? ` ${detail}` : ''}`;
      if (line === lastLine) return; // the same line again says nothing new
      lastStage = p.stage;
      lastLayer = layer;
      lastAt = now;
      lastLine = line;
      process.stderr.write(`${line}\n`);
    },
    stop() {},
  };
}

function fmt(v: unknown, digits = 4): string {
  return typeof v === 'number' ? v.toFixed(digits) : 'n/a';
}

export function summaryLines(report: JobReport): string[] {
  const s = report.summary as { compressedLayers?: number; skippedLayers?: number; meanLayerRelError?: number | null };
  const q = report.quality as Record<string, unknown> & {
    dense?: Record<string, number>;
    compressed?: Record<string, number>;
  };
  const lines = [
    `${report.method}: ${s?.compressedLayers ?? 0} layers compressed, ${s?.skippedLayers ?? 0} skipped; ` +
      `mean layer error ${fmt(s?.meanLayerRelError)}`,
  ];
  if (q.evaluated) {
    let line =
      `quality on ${q.data} data (${q.samples} samples): relative error ${fmt(q.relativeError)}, ` +
      `cosine ${fmt(q.cosineSimilarity)}, top-1 agreement ${fmt(q.top1Agreement, 3)}`;
    if (q.dense?.accuracy !== undefined)
      line += `, accuracy ${fmt(q.dense.accuracy, 3)} → ${fmt(q.compressed?.accuracy, 3)}`;
    if (q.dense?.perplexity !== undefined) {
      line += `, perplexity ${fmt(q.dense.perplexity, 2)} → ${fmt(q.compressed?.perplexity, 2)}`;
    }
    lines.push(line);
  } else lines.push(`quality: not evaluated (${String(q.reason ?? 'no data')})`);
  lines.push(
    `size: ${report.sizes.inputBytes} → ${report.sizes.outputBytes} bytes; ` +
      `ONNX Runtime ${report.onnxruntime.version} (${report.onnxruntime.executionProvider}); ${fmt(report.seconds, 1)} s`,
  );
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  return lines;
}

export async function compress(model: string, opts: CompressOptions): Promise<void> {
  const recipeJson = await readRecipeJson(opts.recipe);
  const out = resolve(opts.output);
  if (!out.endsWith('.onnx')) throw new InputError('bad-output', `output ${opts.output} must end in .onnx`);
  const printer = await progressPrinter(opts.progress !== false && !!process.stderr.isTTY);
  // The load stage starts here: its modules (the recipe schema, the engine, ONNX Runtime's native library) take
  // a moment, so say what is happening first. The engine's own first line is the same one, and the printer does not
  // repeat it. A recipe that fails the schema is reported after this line (its checks live in the loaded modules).
  printer.update({ stage: 'load', fraction: 0, message: `loading ${resolve(model)}` });
  let recipe: Awaited<ReturnType<typeof parseRecipeJson>>;
  try {
    recipe = await parseRecipeJson(opts.recipe, recipeJson);
  } catch (e) {
    printer.stop(); // a terminal's bar gives the line back before main.ts prints the error
    throw e;
  }
  // Work in a scratch folder next to OUT, then move the results into place (same filesystem: atomic renames).
  const work = await mkdtemp(join(dirname(out), '.onnx-compress-'));
  const ac = new AbortController();
  const onSignal = () => ac.abort(new DOMException('interrupted', 'AbortError'));
  process.once('SIGINT', onSignal);
  try {
    const { runRecipe } = await import('../../../packages/engine/index.js');
    ac.signal.throwIfAborted();
    const result = await runRecipe(
      recipe,
      {
        modelPath: resolve(model),
        outputDir: work,
        outputName: basename(out),
        ...(opts.calibration ? { calibrationPath: resolve(opts.calibration) } : {}),
        ...(opts.eval ? { evalPath: resolve(opts.eval) } : {}),
      },
      {
        onProgress: (p) => printer.update(p),
        signal: ac.signal,
        executionProviders: opts.device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
      },
    );
    printer.stop();
    for (const a of result.artifacts) {
      if (a.name === 'report.json') continue;
      await rename(a.path, join(dirname(out), a.name));
    }
    if (opts.report) await writeFile(opts.report, JSON.stringify(result.report, null, 2));
    process.stdout.write(
      [
        `wrote ${out}${result.artifacts.some((a) => a.name.endsWith('.data')) ? ` (+ ${out}.data)` : ''}` +
          (opts.report ? ` and ${opts.report}` : ''),
        ...summaryLines(result.report),
      ].join('\n') + '\n',
    );
  } finally {
    printer.stop();
    process.off('SIGINT', onSignal);
    await rm(work, { recursive: true, force: true });
  }
}
