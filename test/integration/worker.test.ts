// Worker plumbing against the real Postgres and Redis, with a deterministic engine stand-in (fixtures/test-engine.ts;
// the e2e test runs the real engine): progress, artifacts + per-layer rows, Range downloads, cancel across
// "processes" (API and worker share nothing but Redis and Postgres), bad input failing once, transient errors
// retried, and a stalled job handed to a second worker: it waits while the stalled attempt holds the lease, and a
// stalled attempt that lost its lease cannot set the job the other one runs back to queued.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../apps/api/app.js';
import type { JobFinishedEvent } from '../../packages/platform/jobs/events.js';
import { openPlatform } from '../../packages/platform/platform.js';
import { jobLeaseKey } from '../../packages/platform/queue/job-lease.js';
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
  env.platform.jobs.events.onFinished((e) => void finished.push(e));
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

/** Ends the Postgres session holding the job's lease (what a dropped connection does); returns sessions ended. */
async function terminateLeaseSession(jobId: string): Promise<number> {
  const key = jobLeaseKey(jobId);
  const rows = await env.platform.db.$queryRaw<{ pid: number; hi: string; lo: string }[]>`
    SELECT pid, classid::text AS hi, objid::text AS lo FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 1 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
  const pids = rows.filter((r) => BigInt.asIntN(64, (BigInt(r.hi) << 32n) | BigInt(r.lo)) === key).map((r) => r.pid);
  for (const pid of pids) await env.platform.db.$queryRaw`SELECT pg_terminate_backend(${pid}::int)`;
  return pids.length;
}

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
    // The API's cancel writes the row (the lifecycle owner) and signals the worker; the worker's engine run then
    // stops on its own schedule, so the row can read cancelled a few ms before the worker has let go: it must let go
    // within the same 5 s bound.
    await waitFor(async () => worker.running.size === 0, Math.max(100, 5000 - (Date.now() - t0)), 10);
    assert.ok(finished.some((e) => e.jobId === id && e.state === 'cancelled'));
  });

  it('sweeps dead scratch periodically, not only at start', async () => {
    const sweeping = await startCompressWorker(env.platform, {
      engineModule: TEST_ENGINE,
      log: quiet,
      scratchSweepMs: 100,
    });
    try {
      // After the start sweep: the folder of a job this database does not know, nothing written in it for two days.
      const gone = join(env.config.workDir, 'jobs', randomUUID());
      const attempt = randomUUID();
      await mkdir(join(gone, attempt), { recursive: true });
      await writeFile(join(gone, 'x'), 'scratch');
      const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
      for (const p of ['x', attempt, '']) await utimes(join(gone, p), twoDaysAgo, twoDaysAgo);
      await waitFor(async () => !existsSync(gone), 10_000);
    } finally {
      await sweeping.close();
    }
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

  it('a stalled-but-alive attempt keeps its job: the worker BullMQ hands it to waits for its lease; one run', async () => {
    // Worker A takes the job, then stalls: it stops renewing its BullMQ lock (force close) while its engine thread
    // runs on — what a starved event loop looks like to BullMQ. Worker B is handed the job; A's lease (a live
    // Postgres session) says A still runs it, so B waits, and A's commit is the job's one run.
    process.env.TEST_ENGINE_MODE = 'ok:4000'; // long enough for B to be handed the job while A still runs it
    await worker.close();
    const platformA = await openPlatform(env.config, { migrate: false });
    const a = await startCompressWorker(platformA, { engineModule: TEST_ENGINE, log: quiet });
    const id = await submit();
    await waitFor(async () => ((await job(id)).state === 'running' ? true : null));
    await Promise.all(a.workers.map((w) => w.close(true)));
    const platformB = await openPlatform(env.config, { migrate: false });
    const bLines: string[] = [];
    const bLog = { ...quiet, warn: (_o: object, m: string) => void bLines.push(m) };
    const b = await startCompressWorker(platformB, { engineModule: TEST_ENGINE, log: bLog });
    try {
      await waitFor(async () => (bLines.some((m) => /stalled worker that still runs it/.test(m)) ? true : null));
      const done = await waitState(id, ['succeeded', 'failed'], 30_000);
      assert.equal(done.state, 'succeeded');
      await waitFor(async () => (a.running.size === 0 && b.running.size === 0 ? true : null), 15_000);
      const j = await env.platform.db.job.findUniqueOrThrow({ where: { id }, include: { artifacts: true } });
      assert.equal(j.attempts, 1, 'B never ran it');
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

  it('a stalled attempt that lost its lease and then fails does not set the job another attempt runs back to queued', async () => {
    // A stalls (as above) and its lease session is killed (a dropped connection): B is handed the job, takes the
    // lease and runs it as attempt 2. A's first run then fails with a transient error; it must not write `queued`
    // over B's running row (BullMQ will not retry A's copy: B holds the job now).
    const marker = join(tmpdir(), `oc-fail-late-${process.pid}-${Date.now()}`);
    process.env.TEST_ENGINE_MODE = `fail-once-after:3000:6000:${marker}`;
    await worker.close();
    const platformA = await openPlatform(env.config, { migrate: false });
    const a = await startCompressWorker(platformA, { engineModule: TEST_ENGINE, log: quiet });
    const id = await submit();
    await waitFor(async () => ((await job(id)).state === 'running' ? true : null));
    await Promise.all(a.workers.map((w) => w.close(true)));
    assert.equal(await terminateLeaseSession(id), 1, "A's lease session");
    const platformB = await openPlatform(env.config, { migrate: false });
    const b = await startCompressWorker(platformB, { engineModule: TEST_ENGINE, log: quiet });
    try {
      await waitFor(async () => ((await job(id)).attempts === 2 ? true : null), 15_000);
      // A's run fails (3 s after it started) while B's runs on (6 s).
      await waitFor(async () => (a.running.size === 0 ? true : null), 15_000);
      const mid = await job(id);
      assert.deepEqual([mid.state, mid.attempts], ['running', 2], 'the row still says B runs it');
      const done = await waitState(id, ['succeeded', 'failed', 'queued'], 30_000);
      assert.equal(done.state, 'succeeded');
      assert.equal(done.attempts, 2);
    } finally {
      await rm(marker, { force: true });
      await b.close();
      await a.close();
      await platformA.close();
      await platformB.close();
      worker = await startCompressWorker(env.platform, { engineModule: TEST_ENGINE, log: quiet });
    }
  });
});
