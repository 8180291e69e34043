// End to end over real HTTP, Postgres, Redis and the real engine: upload PP-OCRv4 (detector) and a calibration set,
// run a 2:4 job and a SLiM job to `succeeded`, download the model and run it in onnxruntime-node, find the per-layer
// metrics rows in Postgres; cancel another job mid-run and see it end `cancelled`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { startServer, type RunningServer } from '../../apps/api/server.js';
import { encodeNpz } from '../../packages/engine/data/npz.js';
import { loadModel, saveModel } from '../../packages/engine/onnx/model.js';
import { request as httpRequest } from 'node:http';
import { startCompressWorker, type RunningWorker } from '../../workers/compress/worker.js';
import {
  DET_MODEL,
  REC_MODEL,
  deleteRedisPrefix,
  dropDatabase,
  databaseUrl,
  uniqueName,
  waitFor,
  REDIS_URL,
  SMALL_MODEL,
} from '../integration/helpers.js';
import { loadConfig } from '../../packages/platform/config/config.js';

// Small images keep calibration fast: the detector takes [N,3,H,W], the recogniser [N,3,48,W].
const SHAPES = { det: [3, 64, 64], rec: [3, 48, 96] } as const;
type Kind = keyof typeof SHAPES;
let server: RunningServer;
let worker: RunningWorker;
let dir: string;
let base: string;
const modelIds: Partial<Record<Kind, string>> = {};
const datasetIds: Partial<Record<Kind, string>> = {};
// Worker errors are printed: an `internal` job failure is otherwise opaque here.
const quiet = { info() {}, warn() {}, error: (o: object, m: string) => console.error(`# worker: ${m}`, o) };

function image(kind: Kind, samples: number): Float32Array {
  const data = new Float32Array(samples * SHAPES[kind].reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37) * 0.5 + Math.cos(i * 0.011) * 0.5;
  return data;
}

async function json(res: Response) {
  const body = await res.text();
  return { status: res.status, type: res.headers.get('content-type'), body: body ? JSON.parse(body) : null };
}

const getJob = async (id: string) => (await json(await fetch(`${base}/v1/jobs/${id}`))).body;

async function submit(kind: Kind, recipe: object) {
  const res = await json(
    await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ modelId: modelIds[kind], calibrationDatasetId: datasetIds[kind], recipe }),
    }),
  );
  assert.equal(res.status, 202, JSON.stringify(res.body));
  assert.equal(res.body.state, 'queued');
  return res.body.id as string;
}

before(async () => {
  const name = uniqueName('e2e');
  dir = await mkdtemp(join(tmpdir(), `${name}-`));
  const config = loadConfig({
    DATABASE_URL: databaseUrl(name),
    REDIS_URL,
    QUEUE_PREFIX: name,
    STORAGE_DIR: join(dir, 'storage'),
    WORK_DIR: join(dir, 'work'),
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    // As a GPU worker is configured: CUDA first. This machine has no CUDA EP, so every job must fall back to the
    // CPU and say so (executionProvider "cpu" and a warning), instead of failing.
    EXECUTION_PROVIDERS: 'cuda,cpu',
  });
  server = await startServer(config);
  worker = await startCompressWorker(server.platform, { log: quiet, progressFlushMs: 100 });
  base = server.url;
});

after(async () => {
  await worker?.close();
  await server?.close();
  if (server) {
    await dropDatabase(server.platform.config.databaseUrl);
    await deleteRedisPrefix(server.platform.config.queuePrefix);
  }
  await rm(dir, { recursive: true, force: true });
});

describe('service end to end', () => {
  it('uploads PP-OCRv4 detector and recogniser (multipart) and a calibration set for each', async () => {
    for (const [kind, path] of [
      ['det', DET_MODEL],
      ['rec', REC_MODEL],
    ] as const) {
      const form = new FormData();
      form.append('name', `ppocr-v4-${kind}`);
      form.append('file', new Blob([await readFile(path)]), `${kind}.onnx`);
      const model = await json(await fetch(`${base}/v1/models`, { method: 'POST', body: form }));
      assert.equal(model.status, 201, JSON.stringify(model.body));
      assert.equal(model.body.inspection.inputs[0].name, 'x');
      modelIds[kind] = model.body.id;

      const npz = encodeNpz({ x: { dtype: 'float32', dims: [2, ...SHAPES[kind]], data: image(kind, 2) } });
      const ds = await json(
        await fetch(`${base}/v1/datasets?name=${kind}-calib.npz`, {
          method: 'POST',
          headers: { 'content-type': 'application/octet-stream' },
          body: npz,
        }),
      );
      assert.equal(ds.status, 201, JSON.stringify(ds.body));
      assert.deepEqual(ds.body.tensors, [{ name: 'x', dtype: 'float32', shape: [2, ...SHAPES[kind]] }]);
      datasetIds[kind] = ds.body.id;
    }
  });

  for (const [label, kind, recipe] of [
    [
      '2:4 sparsity (wanda) on the detector',
      'det',
      { method: 'sparsity', pattern: '2:4', criterion: 'wanda', calibration: { samples: 2, batchSize: 1 } },
    ],
    ['SLiM on the recogniser', 'rec', { method: 'slim', calibration: { samples: 2, batchSize: 1 } }],
  ] as const) {
    it(`runs ${label} to succeeded; the artifact runs in onnxruntime-node; metrics rows in Postgres`, async () => {
      const id = await submit(kind, recipe);
      const done = await waitFor(
        async () => {
          const j = await getJob(id);
          return ['succeeded', 'failed', 'cancelled'].includes(j.state) ? j : null;
        },
        240_000,
        250,
      );
      assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
      assert.equal(done.executionProvider, 'cpu');
      assert.ok(
        done.metrics.warnings.some((w: string) => w.startsWith('execution provider fallback: cuda')),
        JSON.stringify(done.metrics.warnings),
      );
      assert.ok(done.startedAt && done.finishedAt);
      const names = done.artifacts.map((a: { name: string }) => a.name);
      assert.ok(names.includes('model.onnx') && names.includes('report.json'), names.join());

      const res = await fetch(`${base}/v1/jobs/${id}/artifacts/model.onnx`);
      assert.equal(res.status, 200);
      const bytes = new Uint8Array(await res.arrayBuffer());
      const entry = done.artifacts.find((a: { name: string }) => a.name === 'model.onnx');
      assert.equal(bytes.length, entry.sizeBytes);
      const path = join(dir, `${id}.onnx`);
      await writeFile(path, bytes);
      const session = await ort.InferenceSession.create(path);
      const out = await session.run({ x: new ort.Tensor('float32', image(kind, 1), [1, ...SHAPES[kind]]) });
      const y = out[session.outputNames[0]].data as Float32Array;
      assert.ok(y.length > 0 && y.every(Number.isFinite));
      await session.release();

      const report = (await json(await fetch(`${base}/v1/jobs/${id}/artifacts/report.json`))).body;
      const rows = await server.platform.db.jobLayerMetric.findMany({
        where: { jobId: id },
        orderBy: { index: 'asc' },
      });
      assert.equal(rows.length, report.layers.length);
      assert.ok(rows.length >= 9);
      const compressed = rows.filter((r) => r.skipped === null);
      assert.ok(compressed.length > 0);
      assert.ok(compressed.every((r) => r.pattern !== null));
      // Queryable as plain SQL, not only through the API.
      const sql = await server.platform.db.$queryRaw<{ n: bigint }[]>`
        SELECT count(*) AS n FROM job_layer_metrics WHERE job_id = ${id}::uuid AND op IN ('Conv', 'MatMul', 'Gemm')`;
      assert.ok(Number(sql[0].n) > 0);
    });
  }

  it('runs a job on a model uploaded with external data (weights in a side file)', async () => {
    const model = await loadModel(SMALL_MODEL);
    await saveModel(model, join(dir, 'ext.onnx'), { externalData: { location: 'weights.bin' } });
    const form = new FormData();
    form.append('file', new Blob([await readFile(join(dir, 'ext.onnx'))]), 'ext.onnx');
    form.append('externalData', new Blob([await readFile(join(dir, 'weights.bin'))]), 'weights.bin');
    const up = await json(await fetch(`${base}/v1/models`, { method: 'POST', body: form }));
    assert.equal(up.status, 201, JSON.stringify(up.body));
    assert.equal(up.body.externalData[0].name, 'weights.bin');
    const res = await json(
      await fetch(`${base}/v1/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ modelId: up.body.id, recipe: { method: 'sparsity', pattern: '2:4' } }),
      }),
    );
    assert.equal(res.status, 202);
    const done = await waitFor(
      async () => {
        const j = await getJob(res.body.id);
        return ['succeeded', 'failed', 'cancelled'].includes(j.state) ? j : null;
      },
      120_000,
      250,
    );
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  });

  it('answers 413 at once when the declared upload size is over the limit', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        `${base}/v1/models?name=huge.onnx`,
        { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': String(2 ** 40) } },
        (r) => {
          r.resume();
          resolve(r.statusCode ?? 0);
          req.destroy();
        },
      );
      req.on('error', reject);
      req.write(Buffer.alloc(1024)); // the rest is never sent: the answer must not wait for it
    });
    assert.equal(status, 413);
  });

  it('cancels a job mid-run; it ends cancelled with no artifacts', async () => {
    // The longest job here (SLiM on the recogniser, tens of seconds): the cancel lands mid-run, not after it.
    const id = await submit('rec', { method: 'slim', calibration: { samples: 2, batchSize: 1 } });
    await waitFor(
      async () => {
        const j = await getJob(id);
        assert.ok(!['succeeded', 'failed'].includes(j.state), `finished before it could be cancelled: ${j.state}`);
        return j.state === 'running' && j.progress > 0.05 ? j : null;
      },
      120_000,
      100,
    );
    const t0 = Date.now();
    const res = await json(await fetch(`${base}/v1/jobs/${id}/cancel`, { method: 'POST' }));
    assert.equal(res.status, 202);
    const done = await waitFor(
      async () => {
        const j = await getJob(id);
        return ['succeeded', 'failed', 'cancelled'].includes(j.state) ? j : null;
      },
      30_000,
      100,
    );
    assert.equal(done.state, 'cancelled');
    assert.deepEqual(done.artifacts, []);
    console.log(`# cancel → cancelled in ${Date.now() - t0} ms`);
  });
});
