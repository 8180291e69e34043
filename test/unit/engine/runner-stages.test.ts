// The runner's stages (packages/engine/runner/): report.stages with sane seconds, memory and providers; evaluation
// one model at a time with the numbers of a side-by-side run (memory or scratch file); latency timed one model at a
// time past the interleaving limit; the execution-provider fallback warned once per job.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { planBatches, batches } from '../../../packages/engine/data/dataset.js';
import { FidelityAccumulator } from '../../../packages/engine/metrics/fidelity.js';
import { LmAccumulator } from '../../../packages/engine/metrics/labels.js';
import { compareLatency } from '../../../packages/engine/quant/latency.js';
import { evaluateModels } from '../../../packages/engine/runtime/evaluate.js';
import { feedsOf, openSession, toFloat32 } from '../../../packages/engine/runtime/session.js';
import { loadDataset } from '../../../packages/engine/data/dataset.js';
import { modelInputSpecs } from '../../../packages/engine/data/inputs.js';
import { SessionOwner } from '../../../packages/engine/runner/sessions.js';
import { loadModel } from '../../../packages/engine/onnx/model.js';
import type { StageReport } from '../../../packages/engine/job.js';
import { mlp, tokenData, transformer } from '../sparsity/models.js';
import { run, tempDir, writeCase } from '../sparsity/helpers.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

function checkStage(s: StageReport, wallSeconds: number): void {
  assert.ok(Number.isFinite(s.seconds) && s.seconds >= 0 && s.seconds <= wallSeconds, `${s.name} ${s.seconds}`);
  // At least what the test process itself occupies, at most the machine's memory.
  assert.ok(s.peakRssBytes >= 16 * 2 ** 20 && s.peakRssBytes < 2 ** 40, `${s.name} ${s.peakRssBytes}`);
  assert.equal(s.executionProvider, 'cpu');
}

test('report.stages: load, calibrate (with its passes), compress, write, evaluate; times add up to the job', async () => {
  const lm = await writeCase(dir, 'lm', transformer(), { ids: tokenData(16) });
  const r = await run(
    { method: 'sparsity', pattern: '2:4', criterion: 'wanda', exclude: ['lm_head'] },
    lm.modelPath,
    join(dir, 'out-wanda'),
    { calibrationPath: lm.dataPath },
  );
  const stages = r.report.stages!;
  assert.deepEqual(
    stages.map((s) => s.name),
    ['load', 'compress', 'calibrate', 'write', 'evaluate'],
  );
  for (const s of stages) checkStage(s, r.report.seconds);
  const total = stages.reduce((a, s) => a + s.seconds, 0);
  assert.ok(total <= r.report.seconds + 1e-6, `${total} > ${r.report.seconds}`);
  assert.ok(total >= 0.5 * r.report.seconds, 'the stages cover the job');
  const cal = stages.find((s) => s.name === 'calibrate')!;
  assert.ok(cal.passes! >= 1);
  assert.equal(cal.passes, (r.report.calibration as { passes: number }).passes);
  assert.equal(stages.find((s) => s.name === 'load')!.passes, undefined, 'only calibration counts passes');
  const onDisk = JSON.parse(readFileSync(join(dir, 'out-wanda', 'report.json'), 'utf8')) as { stages: StageReport[] };
  assert.deepEqual(
    onDisk.stages.map((s) => s.name),
    stages.map((s) => s.name),
  );
});

test('report.stages: quantize declares latency timing and gets a latency stage; magnitude without data has none', async () => {
  const c = await writeCase(dir, 'mlp', mlp(), { x: { dtype: 'float32', dims: [8, 16], data: new Float32Array(128) } });
  const q = await run({ method: 'quantize', quant: { bits: 4, groupSize: 16 } }, c.modelPath, join(dir, 'out-q'), {
    calibrationPath: c.dataPath,
  });
  assert.deepEqual(
    q.report.stages!.map((s) => s.name),
    ['load', 'compress', 'calibrate', 'write', 'evaluate', 'latency'],
  );
  for (const s of q.report.stages!) checkStage(s, q.report.seconds);
  const latency = q.report.latency as { mode: string; note: string; rows: { compressed: { runs: number } }[] };
  assert.equal(latency.mode, 'interleaved');
  // The compressed model is timed in the session evaluation ran it in.
  assert.match(latency.note, /the compressed model is timed in the session evaluation ran it in/);
  assert.ok(latency.rows.every((r) => r.compressed.runs >= 1));
  // By default a batch is timed until both medians are within ±5% (or 10 s); the recipe may ask otherwise.
  assert.match(latency.note, /within ±5% of its p50 after at least 6 runs, 50 runs, .* budget of 10 s for both models/);
  const asked = await run(
    { method: 'quantize', quant: { bits: 4, groupSize: 16 }, evaluation: { latency: { tolerance: 0.2, maxRuns: 7 } } },
    c.modelPath,
    join(dir, 'out-q-asked'),
    { calibrationPath: c.dataPath },
  );
  const l2 = asked.report.latency as {
    note: string;
    rows: { dense: { runs: number }; compressed: { runs: number } }[];
  };
  assert.match(l2.note, /within ±20% of its p50 after at least 6 runs, 7 runs/);
  // Timed as a deployment runs the models: with ONNX Runtime's CPU arena (evaluation's session included).
  assert.match(l2.note, /sessions with ONNX Runtime's CPU memory arena \(its default.* without its memory pattern/);
  assert.ok(l2.rows.every((r) => r.dense.runs <= 7 && r.compressed.runs <= 7));
  const m = await run({ method: 'sparsity', pattern: '2:4' }, c.modelPath, join(dir, 'out-m'));
  assert.deepEqual(
    m.report.stages!.map((s) => s.name),
    ['load', 'compress', 'write'],
  );
  assert.equal(m.report.latency, undefined);
});

test("a timed method's evaluation runs the compressed model with the CPU arena: same numbers as without", async () => {
  const lm = await writeCase(dir, 'lm-arena', transformer(), { ids: tokenData(10) });
  const out = join(dir, 'out-arena');
  const r = await run(
    { method: 'quantize', quant: { bits: 4, groupSize: 16 }, calibration: { batchSize: 3 } },
    lm.modelPath,
    out,
    { calibrationPath: lm.dataPath },
  );
  assert.ok(r.report.latency, 'quantize is timed, so evaluation kept its session for latency');
  const q = r.report.quality as { relativeError: number; compressed: { nll: number }; dense: { nll: number } };
  // The arena changes where a run's buffers come from, not its outputs: bit for bit the arena-off route's numbers.
  for (const arena of [false, true]) {
    const ref = await sideBySide(lm.modelPath, join(out, 'model.onnx'), lm.dataPath, arena);
    assert.equal(q.relativeError, ref.fidelity.relativeError, `arena ${arena}`);
    assert.equal(q.dense.nll, ref.dense.nll);
    assert.equal(q.compressed.nll, ref.compressed.nll);
  }
  assert.ok(q.relativeError > 0, 'the models differ');
});

/** A side-by-side reference: both sessions open, fidelity and LM scores accumulated batch by batch. */
async function sideBySide(densePath: string, compressedPath: string, dataPath: string, cpuMemArena?: boolean) {
  const model = await loadModel(densePath);
  const data = await loadDataset(dataPath, modelInputSpecs(model.proto));
  const ranges = planBatches(data.samples, 3).ranges;
  const so = cpuMemArena === undefined ? {} : { cpuMemArena };
  const a = await openSession(densePath, so);
  const b = await openSession(compressedPath, so);
  const fid = new FidelityAccumulator();
  const lmD = new LmAccumulator();
  const lmC = new LmAccumulator();
  const name = a.session.outputNames[0];
  for (const batch of batches(data, ranges)) {
    const f = feedsOf(batch.inputs);
    const y = (await a.session.run(f))[name] as ort.Tensor;
    const yh = (await b.session.run(f))[name] as ort.Tensor;
    const dims = [...y.dims];
    fid.add(toFloat32(y), toFloat32(yh), dims);
    const ids = batch.inputs.get('ids')!.data as BigInt64Array;
    const targets = new BigInt64Array(ids.length);
    const [B, T] = dims;
    for (let s = 0; s < B; s++) for (let t = 0; t < T; t++) targets[s * T + t] = t + 1 < T ? ids[s * T + t + 1] : -1n;
    lmD.add(toFloat32(y), dims, targets, false);
    lmC.add(toFloat32(yh), dims, targets, false);
  }
  await a.session.release();
  await b.session.release();
  return { data, ranges, fidelity: fid.result(), dense: lmD.result(), compressed: lmC.result() };
}

test('evaluation runs one model at a time and gives the numbers of a side-by-side run (in memory and spilled)', async () => {
  const lm = await writeCase(dir, 'lm-eval', transformer(), { ids: tokenData(10) });
  const out = join(dir, 'out-eval');
  await run({ method: 'sparsity', pattern: '2:4' }, lm.modelPath, out);
  const ref = await sideBySide(lm.modelPath, join(out, 'model.onnx'), lm.dataPath);
  for (const maxHeldOutputBytes of [undefined, 0]) {
    const events: string[] = [];
    const opener = (label: string, path: string) => async () => {
      events.push(`open ${label}`);
      const { session } = await openSession(path);
      return {
        session,
        release: async () => {
          events.push(`release ${label}`);
          await session.release();
        },
      };
    };
    const q = await evaluateModels({
      dense: opener('dense', lm.modelPath),
      compressed: opener('compressed', join(out, 'model.onnx')),
      dataset: ref.data,
      ranges: ref.ranges,
      scratchDir: dir,
      ...(maxHeldOutputBytes === undefined ? {} : { maxHeldOutputBytes }),
    });
    assert.deepEqual(events, ['open dense', 'release dense', 'open compressed', 'release compressed']);
    assert.equal(q.task, 'lm');
    assert.equal(q.relativeError, ref.fidelity.relativeError);
    assert.equal(q.cosineSimilarity, ref.fidelity.cosineSimilarity);
    assert.equal(q.top1Agreement, ref.fidelity.top1Agreement);
    assert.equal(q.dense!.nll, ref.dense.nll);
    assert.equal(q.compressed!.nll, ref.compressed.nll);
    assert.ok(q.relativeError > 0, 'the models differ');
  }
});

test('evaluation takes the dense outputs from the first calibration pass: same quality as a dense session of its own', async () => {
  // Without evaluation data the first calibration pass records the dense outputs on the calibration batches; with it,
  // a plain dense session runs the evaluation batches once that pass is done. Either way the numbers equal
  // evaluateModels with the dense model in its own session (the route evaluation took before).
  const lm = await writeCase(dir, 'lm-reuse', transformer(), { ids: tokenData(10) });
  const held = await writeCase(dir, 'lm-held', transformer(), { ids: tokenData(7, undefined, 9) });
  const opened: string[] = [];
  const open = SessionOwner.prototype.open;
  SessionOwner.prototype.open = function (this: SessionOwner, model, o) {
    if (typeof model === 'string') opened.push(model);
    return open.call(this, model, o);
  };
  const twoSessions = async (compressedPath: string, dataPath: string) => {
    const model = await loadModel(lm.modelPath);
    const data = await loadDataset(dataPath, modelInputSpecs(model.proto));
    const opener = (path: string) => async () => {
      const { session } = await openSession(path, { cpuMemArena: false });
      return { session, release: () => session.release() };
    };
    return evaluateModels({
      dense: opener(lm.modelPath),
      compressed: opener(compressedPath),
      dataset: data,
      ranges: planBatches(data.samples, 4).ranges,
      scratchDir: dir,
    });
  };
  try {
    for (const [name, extra, evalPath] of [
      ['wanda', {}, undefined],
      ['sparsegpt', {}, undefined],
      ['wanda-sequential', { sequential: true }, undefined],
      ['wanda-eval-same-file', {}, lm.dataPath],
      ['sparsegpt-eval-set', {}, held.dataPath],
    ] as const) {
      const recipe = {
        method: 'sparsity',
        pattern: '2:4',
        criterion: name.split('-')[0],
        calibration: { batchSize: 4, ...extra },
      };
      opened.length = 0;
      const out = join(dir, `out-reuse-${name}`);
      const r = await run(recipe, lm.modelPath, out, {
        calibrationPath: lm.dataPath,
        ...(evalPath ? { evalPath } : {}),
      });
      // With evaluation data the dense model runs it in a plain session of its own, once (no reductions on those
      // batches); else the capture session's outputs serve and the dense model is not opened again.
      const opens = opened.filter((p) => p === lm.modelPath).length;
      assert.equal(opens, evalPath ? 1 : 0, `${name}: the dense model was opened ${opens} times`);
      const { evaluated, data, source, random, ...q } = r.report.quality as Record<string, unknown>;
      assert.deepEqual(
        [evaluated, data, source, random],
        [true, evalPath ? 'evaluation' : 'calibration', evalPath ?? lm.dataPath, false],
      );
      assert.equal(q.samples, evalPath === held.dataPath ? 7 : 10);
      const ref = await twoSessions(join(out, 'model.onnx'), evalPath ?? lm.dataPath);
      assert.deepEqual(q, { ...ref }, name);
      assert.ok((q.relativeError as number) > 0, 'the models differ');
      const stages = r.report.stages!.map((s) => s.name);
      assert.ok(stages.includes('evaluate'), stages.join());
    }
  } finally {
    SessionOwner.prototype.open = open;
  }
});

test('latency past the interleaving limit times one model at a time; the EP fallback is warned once per job', async () => {
  const c = await writeCase(dir, 'mlp-lat', mlp(), {
    x: { dtype: 'float32', dims: [8, 16], data: new Float32Array(128).fill(0.5) },
  });
  const out = join(dir, 'out-lat');
  await run({ method: 'quantize', quant: { bits: 4, groupSize: 16 } }, c.modelPath, out);
  const warnings: string[] = [];
  const owner = new SessionOwner(['cuda', 'cpu'], warnings);
  const live = new Set<string>();
  let most = 0;
  const rep = await compareLatency(
    c.modelPath,
    join(out, 'model.onnx'),
    new Map([['x', { dtype: 'float32', dims: [8, 16], data: new Float32Array(128) }]]),
    {
      executionProviders: owner.candidates,
      openSession: async (path, o) => {
        const opened = await owner.openUntracked(path, o);
        live.add(path);
        most = Math.max(most, live.size);
        const release = opened.session.release.bind(opened.session);
        opened.session.release = async () => {
          live.delete(path);
          await release();
        };
        return opened;
      },
      denseBytes: 2,
      interleaveMaxBytes: 1,
      runs: 3,
      batches: [1],
    },
  );
  assert.equal(rep.mode, 'sequential');
  assert.equal(most, 1, 'never two sessions at once');
  assert.equal(rep.rows.length, 1);
  assert.ok(rep.rows[0].dense.runs >= 1 && rep.rows[0].compressed.runs >= 1);
  // A compressed session handed over (the one evaluation ran): timed first and released before the dense one opens.
  const given = await owner.openUntracked(join(out, 'model.onnx'), { cpuMemArena: false });
  live.add('given');
  let released = 0;
  const handed = await compareLatency(
    c.modelPath,
    '/nonexistent/never-opened.onnx',
    new Map([['x', { dtype: 'float32', dims: [8, 16], data: new Float32Array(128) }]]),
    {
      openSession: async (path, o) => {
        assert.equal(o.cpuMemArena, false, 'the dense session is opened like the handed-over one');
        assert.equal(live.size, 0, 'the handed-over session was released first');
        return owner.openUntracked(path, o);
      },
      compressed: {
        session: given.session,
        executionProvider: given.executionProvider,
        release: async () => {
          released++;
          live.delete('given');
          await given.session.release();
        },
        warm: [8],
      },
      sessionOptions: { cpuMemArena: false },
      denseBytes: 2,
      interleaveMaxBytes: 1,
      runs: 3,
      batches: [1, 8],
    },
  );
  assert.equal(released, 1);
  assert.equal(handed.mode, 'sequential');
  assert.match(handed.note, /compressed then dense/);
  assert.match(handed.note, /without ONNX Runtime's CPU memory arena/);
  for (const row of handed.rows) assert.ok(row.dense.runs >= 1 && row.compressed.runs >= 1);
  // Several sessions of one job: a provider that failed is warned about once and not tried again.
  await owner.release(await owner.open(c.modelPath));
  const fallbacks = warnings.filter((w) => w.startsWith('execution provider fallback: '));
  if (owner.executionProvider === 'cpu') assert.equal(fallbacks.length, 1, warnings.join('\n'));
  else assert.equal(fallbacks.length, 0);
});
