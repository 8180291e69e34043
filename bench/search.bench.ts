// Recipe search (issue 14) on the LLM-shaped generator (bench/lib/llm-model.ts, RANDOM weights): the whole search
// with the default space and maxTrials 24 — trials, seconds per trial, seconds per stage — against uniform
// candidates of that space run as their own standalone jobs on the same files in the same run (calibration,
// compression, evaluation and, for quantize/slim, latency included): the ratio search ÷ most expensive standalone
// job (target ≤ 10×), and (--standalone all) the chosen model's bytes against each uniform candidate that also meets
// the budget (per-layer mixing must earn its keep: the table says where it does not, with the numbers).
//
// Run: npx tsx bench/search.bench.ts [--params 100M|20M|5M] [--budget fidelity:0.1|perplexity:0.02|…]
//        [--max-trials 24] [--samples 16] [--eval-samples 8] [--seq 64] [--standalone heavy|all|none]
//        [--json FILE] [--svg FILE] [--standalone-only LABEL[,LABEL…]]
// --standalone heavy[:N] (default N = 3) runs as standalone jobs the N choices whose probe runs cost the most (the
// candidates for the most expensive job; every other choice is rounding or a mask); all runs every uniform
// candidate (the per-layer comparison); none (or --no-uniform) only the search. Seconds are wall clock and CPU
// (every thread of the process): on a shared machine the CPU ratio is the steadier one.
// Quality on random weights describes reconstruction of random layers, not language modelling.
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Recipe } from '../packages/engine/recipe.js';
import { runRecipe } from '../packages/engine/run.js';
import { choiceLabel, expandSpace } from '../packages/engine/search/space.js';
import { cpuSince, f2, flag, mb, parseBudget, standalone, type Uniform } from './lib/search-standalone.js';
import { llmParams, llmPreset, writeLlmCalibration, writeLlmModel } from './lib/llm-model.js';

async function main(): Promise<void> {
  const size = flag('params', '100M');
  const shape = llmPreset(size);
  const budget = parseBudget(flag('budget', 'fidelity:0.1'));
  const maxTrials = Number(flag('max-trials', '24'));
  const samples = Number(flag('samples', '16'));
  const evalSamples = Number(flag('eval-samples', '8'));
  const seq = Number(flag('seq', '64'));
  const dir = await mkdtemp(join(tmpdir(), 'search-bench-'));
  console.log(
    `# search bench: ${size} (${(llmParams(shape) / 1e6).toFixed(1)} M params), budget ${JSON.stringify(budget)}`,
  );
  console.log(
    `# ${cpus().length} cores, load ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}; calib ${samples}×${seq}, eval ${evalSamples}×${seq}`,
  );
  try {
    const model = await writeLlmModel(dir, shape);
    const calibrationPath = join(dir, 'calib.npz');
    const evalPath = join(dir, 'eval.npz');
    await writeLlmCalibration(calibrationPath, shape, { samples, seq, seed: 7 });
    await writeLlmCalibration(evalPath, shape, { samples: evalSamples, seq, seed: 99 });
    const files = { modelPath: model.modelPath, calibrationPath, evalPath };
    const common = { calibration: { samples }, exclude: ['*lm_head*'] } as Partial<Recipe>;

    const only = flag('standalone-only', '');
    if (only) {
      // Only the named standalone jobs (labels as printed, comma-separated), on the same seeded files: for running
      // the baseline in its own process beside a long search (CPU seconds are per process).
      const names = only.split(',').map((x) => x.trim());
      for (const c of expandSpace(undefined).filter((x) => names.includes(choiceLabel(x)))) {
        const u = await standalone(c, files, budget, common, join(dir, 'uniform-out'));
        console.log(
          `  standalone ${u.label.padEnd(34)} ${u.seconds.toFixed(1).padStart(6)} s (${u.cpu.toFixed(1)} s CPU) ${mb(u.bytes).padStart(8)} MB  metric ${f2(u.metric)}  ${u.within ? 'within' : 'over  '}  (${u.how})`,
        );
      }
      return;
    }
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const res = await runRecipe({ method: 'search', budget, maxTrials, ...common } as Recipe, {
      ...files,
      outputDir: join(dir, 'search-out'),
    });
    const searchSeconds = (performance.now() - t0) / 1000;
    const searchCpu = cpuSince(c0);
    const s = res.report.search as {
      trials: { used: number };
      seconds: Record<string, number>;
      secondsPerTrial: number;
      chosen: { trial: number; kind: string; bytes: number; metric: number; delta: number; plan: { counts?: unknown } };
      points: {
        trial: number;
        kind: string;
        bytes: number;
        metric: number;
        withinBudget: boolean;
        seconds: number;
        plan: { uniform?: string; counts?: unknown };
      }[];
      sensitivity: { choice: string; source: string; seconds: number; bytes: number | null; damage: number | null }[];
      probes: Record<string, string>;
    };
    const stages = res.report.stages as { name: string; seconds: number }[];
    console.log(
      `\nsearch: ${searchSeconds.toFixed(1)} s wall (${searchCpu.toFixed(1)} s CPU), ${s.trials.used} trials, ${s.secondsPerTrial?.toFixed(2)} s per trial`,
    );
    console.log(`  job stages: ${stages.map((x) => `${x.name} ${x.seconds.toFixed(1)} s`).join(', ')}`);
    console.log(
      `  search stages: ${Object.entries(s.seconds)
        .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
        .join(', ')}`,
    );
    console.log(`  probe layers: ${JSON.stringify(s.probes)}`);
    for (const p of s.sensitivity)
      console.log(
        `  sensitivity ${p.choice.padEnd(38)} ${p.source.padEnd(9)} ${p.seconds.toFixed(2).padStart(6)} s  predicted ${p.bytes === null ? '—' : mb(p.bytes)} MB  damage ${p.damage === null ? '—' : p.damage.toExponential(2)}`,
      );
    for (const p of s.points)
      console.log(
        `  trial ${String(p.trial).padStart(2)} ${p.kind.padEnd(7)} ${p.seconds.toFixed(1).padStart(6)} s ${mb(p.bytes).padStart(8)} MB  metric ${f2(p.metric)} ${p.withinBudget ? 'within' : 'over  '} ${JSON.stringify(p.plan.uniform ?? p.plan.counts)}`,
      );
    console.log(
      `  chosen: trial ${s.chosen.trial} (${s.chosen.kind}) ${mb(s.chosen.bytes)} MB, metric ${f2(s.chosen.metric)}, delta ${f2(s.chosen.delta)} ${JSON.stringify(s.chosen.plan.counts ?? '')}`,
    );
    const svgOut = flag('svg', '');
    if (svgOut) await copyFile(join(dir, 'search-out', 'pareto.svg'), svgOut);
    const json = flag('json', '');
    const save = (uniform: Uniform[]) =>
      json
        ? writeFile(
            json,
            JSON.stringify({ size, budget, searchSeconds, searchCpu, search: s, stages, uniform }, null, 2),
          )
        : Promise.resolve();
    await save([]);

    // Standalone jobs: "all" = every uniform candidate of the default space (the per-layer comparison); "heavy" =
    // the three choices whose probe runs cost the most per layer (the candidates for the most expensive job).
    const [mode, count] = (process.argv.includes('--no-uniform') ? 'none' : flag('standalone', 'heavy')).split(':');
    if (mode === 'none') return;
    const space = expandSpace(undefined);
    const heavy = [...s.sensitivity]
      .filter((p) => p.source !== 'simulated')
      .sort((a, b) => b.seconds - a.seconds)
      .slice(0, Number(count ?? 3))
      .map((p) => p.choice);
    const runSet = mode === 'all' ? space : space.filter((c) => heavy.includes(choiceLabel(c)));
    const rows: Uniform[] = [];
    for (const c of runSet) {
      const u = await standalone(c, files, budget, common, join(dir, 'uniform-out'));
      rows.push(u);
      console.log(
        `  standalone ${u.label.padEnd(34)} ${u.seconds.toFixed(1).padStart(6)} s (${u.cpu.toFixed(1)} s CPU) ${mb(u.bytes).padStart(8)} MB  metric ${f2(u.metric)}  ${u.within ? 'within' : 'over  '}  (${u.how})`,
      );
    }
    await save(rows);
    const worst = rows.reduce((a, b) => (b.seconds > a.seconds ? b : a));
    console.log(
      `\nsearch ÷ most expensive standalone candidate (${worst.label}, ${worst.seconds.toFixed(1)} s wall, ${worst.cpu.toFixed(1)} s CPU): ` +
        `${(searchSeconds / worst.seconds).toFixed(2)}× wall, ${(searchCpu / worst.cpu).toFixed(2)}× CPU (target ≤ 10×)`,
    );
    if (mode !== 'all') return;
    const meeting = rows.filter((r) => r.within);
    const beaten = meeting.filter((r) => s.chosen.bytes < r.bytes);
    console.log(
      `uniform candidates within budget: ${meeting.length}; chosen (${mb(s.chosen.bytes)} MB) smaller than ${beaten.length} of them`,
    );
    for (const r of meeting)
      console.log(
        `  ${r.label.padEnd(34)} ${mb(r.bytes)} MB → chosen is ${((s.chosen.bytes / r.bytes) * 100).toFixed(1)}% of it ${s.chosen.bytes < r.bytes ? '✔' : '✘'}`,
      );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
