// Worker plumbing against the real Postgres and Redis, with a deterministic engine stand-in (fixtures/test-engine.ts;
// the e2e test runs the real engine): progress, artifacts + per-layer rows, Range downloads, cancel across
// "processes" (API and worker share nothing but Redis and Postgres), bad input failing once, transient errors
// retried, and a stalled job taken over by a second worker without a second set of artifacts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../apps/api/app.js';
import { registerJobFinishedHook, type JobFinishedEvent } from '../../packages/platform/events/job-finished.js';
import { openPlatform } from '../../packages/platform/runtime.js';
import { startCompressWorker, type RunningWorker } from '../../workers/compress/worker.js';
import { encodeNpz } from '../../packages/engine/data/npz.js';
import { openTestEnv, SMALL_MODEL, waitFor, type TestEnv } from './helpers.js';

const TEST_ENGINE = new URL('./fixtures/test-engine.ts', import.meta.url).href;
const TENANT = '00000000-0000-4000-8000-000000000001';
let env: TestEnv;
let app: FastifyInstance;
let worker: RunningWorker;
let modelId: string;
const finished: JobFinishedEvent[] = [];

async function submit(recipe: object = { method: 'sparsity', pattern: '2:4' }, extra: object = {}) {
  const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { modelId, recipe, ...extra } });
  assert.equal(res.statusCode, 202, res.body);
  return res.json().id as string;
}

async function job(id: string) {
  return (await app.inject({ method: 'GET', url: `/v1/jobs/${id}` })).json();
}

const waitState = (id: string, states: string[], ms = 20_000) =>
  waitFor(async () => {
    const j = await job(id);
    return states.includes(j.state) ? j : null;
  }, ms);

/** The worker's log lines of this file's jobs: [level, message, fields]. */
const lines: [string, string, Record<string, unknown>][] = [];
const recording = {
  info: (o: object, m: string) => void lines.push(['info', m, o as Record<string, unknown>]),
  warn: (o: object, m: string) => void lines.push(['warn', m, o as Record<string, unknown>]),
  error: (o: object, m: string) => void lines.push(['error', m, o as Record<string, unknown>]),
};

before(async () => {
  env = await openTestEnv('worker', { JOB_ATTEMPTS: '3', RETRY_BACKOFF_MS: '100', STALLED_INTERVAL_MS: '1000' });
  app = await buildApp({ deps: env.platform, logger: false });
  worker = await startCompressWorker(env.platform, {
    engineModule: TEST_ENGINE,
    progressFlushMs: 50,
    log: recording,
  });
  registerJobFinishedHook((e) => void finished.push(e));
  const res = await app.inject({
    method: 'POST',
    url: '/v1/models?name=cls.onnx',
    headers: { 'content-type': 'application/octet-stream' },
    payload: await readFile(SMALL_MODEL),
  });
  modelId = res.json().id;
});

after(async () => {
  await worker?.close();
  await app?.close();
  await env?.cleanup();
});

const quiet = { info() {}, warn() {}, error() {} };

describe('compress worker', () => {
  it('runs a job: progress, artifacts with sha256, per-layer rows, Range download, finished hook', async () => {
    process.env.TEST_ENGINE_MODE = 'ok:1200';
    const id = await submit();
    const mid = await waitFor(async () => {
      const j = await job(id);
      return j.state === 'running' && j.stage === 'compress' && j.progress < 1 ? j : null;
    });
    assert.equal(mid.stage, 'compress');
    assert.equal(mid.progressDetail.layer.total, 4);
    // The stage message names the model by its name, never by the worker's scratch path.
    assert.match(mid.progressDetail.message, /^compressing w\d of cls\.onnx$/);
    // What BullMQ carries to SSE streams (QueueEvents 'progress') is the whole progress, layer and message included.
    const bull = await env.platform.queues.byDevice.cpu.getJob(id);
    assert.deepEqual(Object.keys((bull?.progress ?? {}) as object).sort(), ['fraction', 'layer', 'message', 'stage']);
    const done = await waitState(id, ['succeeded', 'failed']);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    assert.equal(done.progress, 1);
    assert.equal(done.executionProvider, 'cpu');
    assert.deepEqual(
      done.artifacts.map((a: { name: string }) => a.name),
      ['model.onnx', 'report.json'],
    );
    assert.equal(done.metrics.quality.relativeError, 0.02);
    // report.stages reach the job's metrics (GET /v1/jobs/:id).
    assert.deepEqual(
      done.metrics.stages.map((s: { name: string; peakRssBytes: number }) => [s.name, s.peakRssBytes]),
      [
        ['load', 1e8],
        ['compress', 2e8],
      ],
    );

    const model = await readFile(SMALL_MODEL);
    const dl = await app.inject({ method: 'GET', url: `/v1/jobs/${id}/artifacts/model.onnx` });
    assert.equal(dl.statusCode, 200);
    assert.ok(dl.rawPayload.equals(model));
    const part = await app.inject({
      method: 'GET',
      url: `/v1/jobs/${id}/artifacts/model.onnx`,
      headers: { range: 'bytes=10-19' },
    });
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers['content-range'], `bytes 10-19/${model.length}`);
    assert.ok(part.rawPayload.equals(model.subarray(10, 20)));
    const suffix = await app.inject({
      method: 'GET',
      url: `/v1/jobs/${id}/artifacts/model.onnx`,
      headers: { range: 'bytes=-5' },
    });
    assert.ok(suffix.rawPayload.equals(model.subarray(model.length - 5)));
    const beyond = await app.inject({
      method: 'GET',
      url: `/v1/jobs/${id}/artifacts/model.onnx`,
      headers: { range: `bytes=${model.length}-` },
    });
    assert.equal(beyond.statusCode, 416);
    assert.equal(beyond.headers['content-range'], `bytes */${model.length}`);
    const missing = await app.inject({ method: 'GET', url: `/v1/jobs/${id}/artifacts/nope.bin` });
    assert.equal(missing.statusCode, 404);

    const rows = await env.platform.db.jobLayerMetric.findMany({ where: { jobId: id }, orderBy: { index: 'asc' } });
    assert.equal(rows.length, 4);
    assert.equal(rows[2].relError, 0.03);
    assert.equal(rows[2].pattern, '2:4');
    assert.deepEqual(rows[2].extra, { custom: 2 });
    const layers = (await app.inject({ method: 'GET', url: `/v1/jobs/${id}/layers` })).json();
    assert.equal(layers.items.length, 4);
    assert.ok(finished.some((e) => e.jobId === id && e.state === 'succeeded'));

    // Log lines: started (worker, execution providers) and succeeded (duration, provider); no secrets, no paths.
    const started = lines.find(([, m, o]) => m === 'job started' && o.jobId === id);
    assert.ok(started, JSON.stringify(lines));
    assert.match(String(started[2].worker), /^.+:\d+$/);
    assert.deepEqual(started[2].executionProviders, ['cpu']);
    const ok = await waitFor(async () => lines.find(([, m, o]) => m === 'job succeeded' && o.jobId === id) ?? null);
    assert.ok(ok && typeof ok[2].seconds === 'number' && ok[2].executionProvider === 'cpu', JSON.stringify(ok));
  });

  it('metrics carry latency, and name datasets (id and name) instead of the worker paths, as report.json does', async () => {
    process.env.TEST_ENGINE_MODE = 'ok:100';
    const data = encodeNpz({
      x: { dtype: 'float32', dims: [2, 3, 48, 192], data: new Float32Array(2 * 3 * 48 * 192) },
    });
    const ds = await app.inject({
      method: 'POST',
      url: '/v1/datasets?name=calib.npz',
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.from(data),
    });
    assert.equal(ds.statusCode, 201, ds.body);
    const datasetId = ds.json().id as string;
    const id = await submit(
      { method: 'sparsity', pattern: '2:4', criterion: 'wanda' },
      { calibrationDatasetId: datasetId },
    );
    const done = await waitState(id, ['succeeded', 'failed']);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    const expected = { source: `dataset calib.npz (${datasetId})`, dataset: { id: datasetId, name: 'calib.npz' } };
    assert.deepEqual({ source: done.metrics.quality.source, dataset: done.metrics.quality.dataset }, expected);
    assert.deepEqual({ source: done.metrics.calibration.source, dataset: done.metrics.calibration.dataset }, expected);
    assert.equal(done.metrics.latency.rows[0].speedup, 2);
    assert.equal(JSON.stringify(done.metrics).includes(env.config.workDir), false, 'no worker path');
    const report = (await app.inject({ method: 'GET', url: `/v1/jobs/${id}/artifacts/report.json` })).json();
    assert.deepEqual(report.quality, done.metrics.quality);
    assert.deepEqual(report.latency, done.metrics.latency);
    assert.deepEqual(report.calibration, done.metrics.calibration);
  });

  it('cancels a running job promptly through the cancel channel', async () => {
    process.env.TEST_ENGINE_MODE = 'ok:60000';
    const id = await submit();
    await waitFor(async () => ((await job(id)).progress > 0 ? true : null));
    const t0 = Date.now();
    const res = await app.inject({ method: 'POST', url: `/v1/jobs/${id}/cancel` });
    assert.equal(res.statusCode, 202);
    const done = await waitState(id, ['cancelled', 'succeeded', 'failed'], 10_000);
    assert.equal(done.state, 'cancelled');
    assert.ok(Date.now() - t0 < 5000, `cancel took ${Date.now() - t0} ms`);
    assert.deepEqual(done.artifacts, []);
    assert.equal(worker.running.size, 0);
    assert.ok(finished.some((e) => e.jobId === id && e.state === 'cancelled'));
  });

  it('fails bad input once, without retries', async () => {
    process.env.TEST_ENGINE_MODE = 'input-error';
    const id = await submit();
    const done = await waitState(id, ['failed', 'succeeded']);
    assert.equal(done.state, 'failed');
    assert.deepEqual(done.error, { code: 'bad-model', message: 'the model has no weights to compress' });
    assert.equal(done.attempts, 1);
    // The line follows the row's update by a moment.
    const failed = await waitFor(async () => lines.find(([, m, o]) => m === 'job failed' && o.jobId === id) ?? null);
    assert.equal(failed[2].code, 'bad-model');
  });

  it('retries a transient failure with backoff and then succeeds', async () => {
    const marker = join(tmpdir(), `oc-fail-once-${process.pid}-${Date.now()}`);
    process.env.TEST_ENGINE_MODE = `fail-once:${marker}`;
    const id = await submit();
    const done = await waitState(id, ['succeeded', 'failed']);
    await rm(marker, { force: true });
    assert.equal(done.state, 'succeeded');
    assert.equal(done.attempts, 2);
    assert.equal(done.error, undefined);
  });

  it('hands a stalled job to another worker and keeps exactly one set of artifacts', async () => {
    // Worker A takes the job, then "dies": it stops renewing its lock (force close) while its engine thread runs on
    // (a zombie that will still try to commit). Worker B picks the stalled job up; whichever commits first wins.
    process.env.TEST_ENGINE_MODE = 'ok:5000'; // long enough that B takes over before A's zombie finishes
    await worker.close();
    const platformA = await openPlatform(env.config, { migrate: false });
    const a = await startCompressWorker(platformA, { engineModule: TEST_ENGINE, log: quiet });
    const id = await submit();
    await waitFor(async () => ((await job(id)).state === 'running' ? true : null));
    await Promise.all(a.workers.map((w) => w.close(true)));
    const platformB = await openPlatform(env.config, { migrate: false });
    const b = await startCompressWorker(platformB, { engineModule: TEST_ENGINE, log: quiet });
    try {
      const done = await waitState(id, ['succeeded', 'failed'], 30_000);
      assert.equal(done.state, 'succeeded');
      // Both attempts ran; let the loser finish its commit attempt and clean up.
      await waitFor(async () => (a.running.size === 0 && b.running.size === 0 ? true : null), 15_000);
      const j = await env.platform.db.job.findUniqueOrThrow({ where: { id }, include: { artifacts: true } });
      assert.ok(j.attempts >= 2, `attempts ${j.attempts}`);
      assert.equal(j.artifacts.length, 2);
      const prefixes = new Set(j.artifacts.map((x) => x.storageKey.split('/').slice(0, -1).join('/')));
      assert.deepEqual([...prefixes], [`tenants/${TENANT}/jobs/${id}/attempts/${j.committedAttempt}`]);
      const storage = env.config.storage as { dir: string };
      const attempts = await readdir(join(storage.dir, 'tenants', TENANT, 'jobs', id, 'attempts'));
      assert.deepEqual(attempts, [j.committedAttempt]);
      assert.equal(await env.platform.db.jobLayerMetric.count({ where: { jobId: id } }), 4);
    } finally {
      await b.close();
      await a.close();
      await platformA.close();
      await platformB.close();
      worker = await startCompressWorker(env.platform, { engineModule: TEST_ENGINE, log: quiet });
    }
  });
});
