// Billion-parameter jobs as a user runs them (issue 12): an LLM-shaped model with RANDOM weights (bench/lib/llm-model.ts;
// default the issue's 953 M parameters: 16 blocks, hidden 2048, MLP 5632, vocabulary 32000; weights in external data),
// a calibration .npz of random token ids, and per method one job in its own process (bench/lib/llm-job.ts) through the
// engine's runRecipe: wall time, report.stages (or spans from progress events where the runner does not report them),
// the process's peak RSS against the model's bytes, and the floors of issue 12 item 3 measured in the same run:
// one dense forward pass of the calibration set, ORT's fp32 MatMul rate R at 4096³, Wanda ≤ 2 × (forward + 2:4
// magnitude), SparseGPT ≤ 3 × F ÷ R + forward with F = Σ activations 2·T·K² + Σ layers (K³ + 2·N·K²), and SLiM in
// the same form with its own F (bench/lib/llm-recipes.ts slimFlops: Σ layers (4 + 4p)·N·K·l for its randomized SVDs,
// l = r + 10, p = 2, r = 0.1·min(N, K), plus their CholeskyQR/Gram/factor terms and 2 × 2·N·K·r adapter products).
// Peer: ONNX Runtime's Python MatMulNBitsQuantizer on the same file, installed from the machine's onnxruntime 1.30
// wheel into a cached folder (NOT RUN where the wheel is absent).
//
// Run: npx tsx bench/llm.bench.ts [--params 1B|250M|20M|…] [--layers N --hidden N --mlp N --vocab N]
//        [--dtype float32|float16] [--methods inspect,rtn,magnitude,wanda,sparsegpt,slim] [--samples 8 --seq 128]
//        [--ep cpu] [--ep cuda,cpu] (one run of every method per --ep; default $EXECUTION_PROVIDERS or cpu)
//        [--dir DIR (model kept and reused there)] [--no-python] [--no-floors] [--timeout SECONDS per job]
//        [--deadline SECONDS (no job starts later; running ones are cut)] [--interleave (method by method)] [--json FILE]
// Quality numbers on random weights describe reconstruction of random layers, not language modelling.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  llmMatMulParams,
  llmParams,
  llmPreset,
  writeLlmCalibration,
  writeLlmModel,
  type LlmDtype,
  type LlmShape,
} from './lib/llm-model.js';
import type { JobOutcome, JobSpec } from './lib/llm-job.js';
import { methodRecipe, METHODS, slimFlops, sparsegptFlops } from './lib/llm-recipes.js';

interface Args {
  shape: LlmShape;
  label: string;
  dtype: LlmDtype;
  methods: string[];
  samples: number;
  seq: number;
  eps: ('cuda' | 'cpu')[][];
  dir?: string;
  python: boolean;
  floors: boolean;
  timeout: number;
  /** Seconds from the start after which no job starts and running ones are cut (bench/gpu.sh's 6 minutes). */
  deadline: number;
  /** Run method by method (each on every EP) instead of EP by EP. */
  interleave: boolean;
  json?: string;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const all = (name: string) => argv.flatMap((a, i) => (a === `--${name}` ? [argv[i + 1]] : []));
  const label = get('params') ?? '1B';
  const shape = llmPreset(label);
  for (const k of ['layers', 'hidden', 'mlp', 'vocab'] as const) if (get(k)) shape[k] = Number(get(k));
  const methods = (get('methods') ?? METHODS.join(',')).split(',').filter(Boolean);
  for (const m of methods) if (!METHODS.includes(m)) throw new Error(`unknown method '${m}': ${METHODS.join(', ')}`);
  const epLists = all('ep').length ? all('ep') : [process.env.EXECUTION_PROVIDERS ?? 'cpu'];
  const eps = epLists.map((l) =>
    l.split(',').map((e) => {
      if (e !== 'cuda' && e !== 'cpu') throw new Error(`--ep takes cuda and/or cpu, got '${e}'`);
      return e;
    }),
  );
  const dtype = (get('dtype') ?? 'float32') as LlmDtype;
  if (dtype !== 'float32' && dtype !== 'float16')
    throw new Error('--dtype float32 or float16 (ONNX Runtime CPU has no bfloat16 MatMul)');
  return {
    shape,
    label,
    dtype,
    methods,
    samples: Number(get('samples') ?? 8),
    seq: Number(get('seq') ?? 128),
    eps,
    dir: get('dir'),
    python: !argv.includes('--no-python'),
    floors: !argv.includes('--no-floors'),
    timeout: Number(get('timeout') ?? 0),
    deadline: Number(get('deadline') ?? 0),
    interleave: argv.includes('--interleave'),
    json: get('json'),
  };
}

const here = dirname(fileURLToPath(import.meta.url));
/** --deadline counts from here (model generation included). */
const started = performance.now();
/** The child entry: the TypeScript source under tsx, or the bundled dist-bench/lib/llm-job.mjs beside a bundled bench. */
function childCommand(): string[] {
  if (import.meta.url.endsWith('.ts')) return ['--import', 'tsx', join(here, 'lib', 'llm-job.ts')];
  return [join(here, 'lib', 'llm-job.mjs')];
}

function runChild(spec: JobSpec, timeoutS: number): Promise<JobOutcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...childCommand(), JSON.stringify(spec)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    const timer = timeoutS > 0 ? setTimeout(() => child.kill('SIGKILL'), timeoutS * 1000) : undefined;
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('@@RESULT '));
      if (line) return resolve(JSON.parse(line.slice(9)) as JobOutcome);
      const why = signal === 'SIGKILL' && timer ? `killed after the ${timeoutS} s timeout` : `exit ${code ?? signal}`;
      resolve({
        method: spec.method,
        ok: false,
        error: `${why}: ${err.trim().split('\n').slice(-3).join(' | ')}`,
        seconds: 0,
        maxRssBytes: 0,
        stages: [],
        stagesFrom: 'none',
      });
    });
  });
}

const GB = 1e9;
const fmtS = (s: number) => (s >= 100 ? s.toFixed(0) : s >= 10 ? s.toFixed(1) : s.toFixed(2));
const fmtGB = (b: number) => (b >= GB ? `${(b / GB).toFixed(2)} GB` : `${(b / 1e6).toFixed(0)} MB`);

function stageText(o: JobOutcome): string {
  if (!o.stages.length) return '—';
  const rows = o.stages.map((s) => {
    const ep = s.executionProvider ? ` [${s.executionProvider}]` : '';
    const passes = s.passes ? ` ${s.passes} pass${s.passes > 1 ? 'es' : ''}` : '';
    return `${s.name} ${fmtS(s.seconds)}${ep}${passes}`;
  });
  return rows.join(', ') + (o.stagesFrom === 'progress' ? ' (from progress events)' : '');
}

/** ONNX Runtime's Python quantizer on the same file, when the image has the 1.30 wheel (NOT RUN otherwise). */
async function pythonPeer(modelPath: string, outDir: string, timeoutS: number): Promise<string> {
  const wheels = ['/opt/pypi/files', '/opt/wheels'].flatMap((d) =>
    existsSync(d)
      ? readdirSync(d)
          .filter((f) => /^onnxruntime-1\.30.*\.whl$/.test(f))
          .map((f) => join(d, f))
      : [],
  );
  if (!wheels.length) return 'NOT RUN (no onnxruntime-1.30 wheel on this machine)';
  const target = join(tmpdir(), 'onnx-compress-bench-ortpy-1.30');
  const sh = (cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
      let out = '';
      let err = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
      const timer = timeoutS > 0 ? setTimeout(() => c.kill('SIGKILL'), timeoutS * 1000) : undefined;
      c.on('close', (code) => {
        if (timer) clearTimeout(timer);
        resolve({ code: code ?? 1, out, err });
      });
      c.on('error', (e) => resolve({ code: 1, out, err: e.message }));
    });
  if (!existsSync(join(target, 'onnxruntime', 'quantization'))) {
    const r = await sh('python3', [
      ...['-m', 'pip', 'install', '--quiet', '--no-index', '--find-links', dirname(wheels[0])],
      ...['--target', target, wheels[0], 'onnx', 'onnx_ir'],
    ]);
    if (r.code !== 0) return `NOT RUN (installing the wheel failed: ${r.err.trim().split('\n').pop()})`;
  }
  const script = existsSync(join(here, 'lib', 'ort_quantize.py'))
    ? join(here, 'lib', 'ort_quantize.py')
    : join(here, 'ort_quantize.py');
  const r = await sh('python3', [script, modelPath, join(outDir, 'ort-python.onnx'), '32'], {
    ...process.env,
    PYTHONPATH: target,
  });
  const line = r.out.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !line.startsWith('{'))
    return `NOT RUN (it failed: ${r.err.trim().split('\n').slice(-1)[0] ?? `exit ${r.code}`})`;
  const j = JSON.parse(line) as { seconds: number; maxRssBytes: number; stages: Record<string, number> };
  return (
    `${fmtS(j.seconds)} s, peak RSS ${fmtGB(j.maxRssBytes)} (load ${fmtS(j.stages.load)} + quantize ` +
    `${fmtS(j.stages.quantize)} + save ${fmtS(j.stages.save)} s; python import ${fmtS(j.stages.import)} s not counted)`
  );
}

function skipped(method: string, why: string): JobOutcome {
  return { method, ok: false, error: why, seconds: 0, maxRssBytes: 0, stages: [], stagesFrom: 'none' };
}

/** The issue's floors beside a Wanda / SparseGPT / SLiM time, from the same run's forward pass, magnitude job and R. */
function floorText(
  m: string,
  o: JobOutcome,
  f: { forward: JobOutcome; gemm: JobOutcome },
  results: (JobOutcome & { ep: string })[],
  epName: string,
  a: Args,
): string | undefined {
  const fwd = f.forward.ok ? f.forward.seconds : undefined;
  if (m === 'wanda' && fwd !== undefined) {
    const mag = results.find((r) => r.ep === epName && r.method === 'magnitude' && r.ok)?.seconds;
    if (!mag) return 'floor needs the magnitude job in the same run';
    const fl = 2 * (fwd + mag);
    return `floor 2×(forward ${fmtS(fwd)} + magnitude ${fmtS(mag)}) = ${fmtS(fl)} s → ${(o.seconds / fl).toFixed(2)}×`;
  }
  if ((m === 'sparsegpt' || m === 'slim') && fwd !== undefined && f.gemm.ok) {
    // SLiM's F (bench/lib/llm-recipes.ts slimFlops): its randomized SVDs and adapter products; no Hessian here.
    const F = m === 'sparsegpt' ? sparsegptFlops(a.shape, a.samples * a.seq) : slimFlops(a.shape);
    const fl = (3 * F) / f.gemm.flops! + fwd;
    return (
      `floor 3×F/R + forward = 3×${(F / 1e12).toFixed(3)} TFLOP / ${(f.gemm.flops! / 1e9).toFixed(0)} GFLOP/s + ` +
      `${fmtS(fwd)} = ${fmtS(fl)} s → ${(o.seconds / fl).toFixed(2)}×`
    );
  }
  return undefined;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const dir = a.dir ?? (await mkdtemp(join(tmpdir(), 'llm-bench-')));
  await mkdir(dir, { recursive: true });
  const tag = `${a.shape.layers}x${a.shape.hidden}x${a.shape.mlp}x${a.shape.vocab}-${a.dtype}`;
  const fileName = `llm-${tag}.onnx`;
  const calib = join(dir, `calib-${a.samples}x${a.seq}-v${a.shape.vocab}.npz`);
  try {
    console.log(
      `LLM-shaped model with RANDOM weights (not a trained model): ${a.label} preset → ${a.shape.layers} blocks, ` +
        `hidden ${a.shape.hidden}, MLP ${a.shape.mlp}, vocab ${a.shape.vocab}; ${(llmParams(a.shape) / 1e6).toFixed(0)} M ` +
        `parameters (${(llmMatMulParams(a.shape) / 1e6).toFixed(0)} M in MatMuls), ${a.dtype}, external data`,
    );
    const modelPath = join(dir, fileName);
    let modelBytes: number;
    if (existsSync(modelPath) && existsSync(`${modelPath}.data`)) {
      modelBytes = statSync(modelPath).size + statSync(`${modelPath}.data`).size;
      console.log(`  reusing ${modelPath} (${fmtGB(modelBytes)})`);
    } else {
      const f = await writeLlmModel(dir, a.shape, { dtype: a.dtype, fileName });
      modelBytes = f.modelBytes + f.dataBytes;
      console.log(`  generated in ${fmtS(f.seconds)} s: ${fmtGB(modelBytes)} (${modelPath})`);
    }
    if (!existsSync(calib)) await writeLlmCalibration(calib, a.shape, { samples: a.samples, seq: a.seq });
    console.log(`  calibration: ${a.samples} × ${a.seq} random token ids (${calib})`);
    console.log(
      `  machine: ${cpus().length} cores, load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );

    const results: (JobOutcome & { ep: string; floor?: string })[] = [];
    const left = () => (a.deadline > 0 ? a.deadline - (performance.now() - started) / 1000 : Infinity);
    const job = (eps: ('cuda' | 'cpu')[], method: string, recipe?: Record<string, unknown>, calibrated = false) => {
      const budget = Math.min(a.timeout > 0 ? a.timeout : Infinity, left());
      if (budget < 1) return Promise.resolve(skipped(method, 'SKIPPED: past the --deadline'));
      return runChild(
        {
          method,
          modelPath,
          outputDir: join(dir, `out-${method}-${eps.join('-')}`),
          executionProviders: eps,
          ...(recipe ? { recipe } : {}),
          ...(calibrated ? { calibrationPath: calib } : {}),
        },
        Number.isFinite(budget) ? Math.ceil(budget) : 0,
      );
    };
    const floors = new Map<string, { forward: JobOutcome; gemm: JobOutcome }>();
    const floorsFor = async (eps: ('cuda' | 'cpu')[]) => {
      const key = eps.join(',');
      if (!floors.has(key)) {
        const forward = await job(eps, 'forward', undefined, true);
        const gemm = await job(eps, 'gemm');
        floors.set(key, { forward, gemm });
        console.log(
          `[${key}] floors: one dense forward pass of the calibration set ${forward.ok ? `${fmtS(forward.seconds)} s [${forward.executionProvider}]` : forward.error}` +
            `; ORT fp32 MatMul 4096³ R = ${gemm.ok ? `${(gemm.flops! / 1e9).toFixed(0)} GFLOP/s [${gemm.executionProvider}]` : gemm.error}`,
        );
      }
      return floors.get(key)!;
    };
    const plan: [('cuda' | 'cpu')[], string][] = a.interleave
      ? a.methods.flatMap((m) => a.eps.map((e): [('cuda' | 'cpu')[], string] => [e, m]))
      : a.eps.flatMap((e) => a.methods.map((m): [('cuda' | 'cpu')[], string] => [e, m]));
    for (const [eps, m] of plan) {
      const epName = eps.join(',');
      const f = a.floors && (m === 'wanda' || m === 'sparsegpt' || m === 'slim') ? await floorsFor(eps) : undefined;
      const { recipe, calibrated } = methodRecipe(m);
      const o = await job(eps, m, recipe, calibrated);
      results.push({ ...o, ep: epName, ...(o.ok && f ? { floor: floorText(m, o, f, results, epName, a) } : {}) });
      console.log(
        `[${epName}] ${m}: ${o.ok ? `${fmtS(o.seconds)} s, peak RSS ${fmtGB(o.maxRssBytes)} (${(o.maxRssBytes / modelBytes).toFixed(2)}× the model)` : `FAILED: ${o.error}`}`,
      );
    }

    const pyPeer =
      a.python && a.methods.includes('rtn') && a.dtype === 'float32'
        ? await pythonPeer(modelPath, dir, a.timeout)
        : 'NOT RUN (' + (a.python ? (a.dtype !== 'float32' ? 'fp16 model' : 'no rtn job') : '--no-python') + ')';

    console.log(
      `\n| method | EP | wall | peak RSS (× model ${fmtGB(modelBytes)}) | stages [EP] | layers | errors (mean layer / model) |`,
    );
    console.log('|---|---|---|---|---|---|---|');
    for (const r of results) {
      const err =
        r.meanLayerError != null || r.modelRelativeError != null
          ? `${r.meanLayerError?.toFixed(3) ?? '—'} / ${r.modelRelativeError?.toFixed(3) ?? '—'}`
          : '—';
      console.log(
        r.ok
          ? `| ${r.method} | ${r.ep} | ${fmtS(r.seconds)} s${r.floor ? ` (${r.floor})` : ''} | ${fmtGB(r.maxRssBytes)} (${(r.maxRssBytes / modelBytes).toFixed(2)}×) | ${stageText(r)} | ${r.layers ?? '—'} | ${err} |`
          : `| ${r.method} | ${r.ep} | FAILED | — | ${r.error} | — | — |`,
      );
    }
    console.log(
      `\nONNX Runtime's Python quantizer (MatMulNBitsQuantizer, RTN g32 symmetric) on the same file: ${pyPeer}`,
    );
    if (a.json) await writeFile(a.json, JSON.stringify({ args: a, modelBytes, results, pyPeer }, null, 2));
  } finally {
    if (!a.dir) await rm(dir, { recursive: true, force: true });
  }
}

void main();
