// Faults against real processes, Postgres and Redis: a worker SIGKILLed mid-job, a worker told to stop (SIGTERM)
// while running, Redis crashing while jobs are queued and running, Postgres going away while the API serves.
// Restart tests use throwaway servers on free ports (servers.ts); the shared ones are never stopped. Workers run
// the deterministic engine stand-in (test/integration/fixtures/test-engine.ts) so a job's length is known.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../apps/api/app.js';
import { startServer, type RunningServer } from '../../apps/api/server.js';
import type { JobFinishedEvent } from '../../packages/platform/jobs/events.js';
import { openPlatform } from '../../packages/platform/platform.js';
import { createJobDelivery } from '../../packages/platform/webhooks/deliveries.js';
import { startCompressWorker } from '../../workers/compress/worker.js';
import { openTestEnv, waitFor, type TestEnv } from '../integration/helpers.js';
import * as C from './corpus.js';
import { getJob, submit, waitState } from './jobs.js';
import { ThrowawayPostgres, ThrowawayRedis } from './servers.js';
import { assertProblem, listFiles } from './support.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const TEST_ENGINE = new URL('../integration/fixtures/test-engine.ts', import.meta.url).href;
const quiet = { info() {}, warn() {}, error() {} };
/** Finished events announced by the platforms of this process (each test subscribes the ones its workers use). */
const finished: JobFinishedEvent[] = [];
const record = (e: JobFinishedEvent) => void finished.push(e);

/** The variables a child process needs to join a test environment. */
function childEnv(env: TestEnv, extra: Record<string, string>): Record<string, string> {
  const c = env.config;
  return {
    ...(process.env as Record<string, string>),
    DATABASE_URL: c.databaseUrl,
    REDIS_URL: c.redisUrl,
    QUEUE_PREFIX: c.queuePrefix,
    STORAGE_DIR: (c.storage as { dir: string }).dir,
    WORK_DIR: c.workDir,
    LOG_LEVEL: 'warn',
    STALLED_INTERVAL_MS: String(c.stalledIntervalMs),
    JOB_ATTEMPTS: String(c.jobAttempts),
    RETRY_BACKOFF_MS: String(c.retryBackoffMs),
    ...extra,
  };
}

interface Child {
  proc: ChildProcess;
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

/** Cleanup after a failure must not hang the suite: give each step 15 s. */
const bounded = (p: Promise<unknown> | undefined) =>
  Promise.race([p?.catch(() => {}), new Promise((r) => setTimeout(r, 15_000).unref())]);

/** Starts scripts/fault-helpers/worker.ts and waits for "ready". */
async function spawnWorker(env: TestEnv, engineMode: string): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'scripts/fault-helpers/worker.ts'], {
    cwd: ROOT,
    env: childEnv(env, { TEST_ENGINE_MODE: engineMode }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.once('exit', (code, signal) => (children.delete(proc), r({ code, signal }))),
  );
  await Promise.race([
    waitFor(async () => out.includes('ready'), 60_000, 50),
    exit.then((e) => Promise.reject(new Error(`worker exited early (${JSON.stringify(e)}): ${out}`))),
  ]);
  return { proc, output: () => out, exit };
}

after(() => {
  for (const p of children) p.kill('SIGKILL');
});

async function upload(app: FastifyInstance): Promise<string> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/models?name=m.onnx',
    headers: { 'content-type': 'application/octet-stream' },
    payload: Buffer.from(C.validModel()),
  });
  assert.equal(res.statusCode, 201, res.body);
  return res.json().id;
}

/** One committed set of artifacts: rows, metric rows and exactly one attempt folder in storage. */
async function assertOneSetOfArtifacts(env: TestEnv, id: string) {
  const db = env.platform.db;
  const j = await db.job.findUniqueOrThrow({ where: { id }, include: { artifacts: true } });
  assert.equal(j.state, 'succeeded');
  assert.deepEqual(j.artifacts.map((a) => a.name).sort(), ['model.onnx', 'report.json']);
  for (const a of j.artifacts) assert.match(a.storageKey, new RegExp(`/jobs/${id}/attempts/${j.committedAttempt}/`));
  assert.equal(await db.jobLayerMetric.count({ where: { jobId: id } }), 4, 'one set of per-layer rows');
  const dir = join((env.config.storage as { dir: string }).dir, 'tenants', j.tenantId, 'jobs', id, 'attempts');
  assert.deepEqual(await readdir(dir), [j.committedAttempt], 'one attempt folder in storage');
  return j;
}

describe('worker faults (real processes, shared Postgres/Redis, unique prefix and database)', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  before(async () => {
    env = await openTestEnv('faults', { STALLED_INTERVAL_MS: '1000', JOB_ATTEMPTS: '3', RETRY_BACKOFF_MS: '100' });
    app = await buildApp({ deps: env.platform, logger: false });
  });
  after(async () => {
    await app?.close();
    await env?.cleanup();
  });

  it('a worker SIGKILLed mid-job: another worker finishes it exactly once', async () => {
    const modelId = await upload(app);
    const a = await spawnWorker(env, 'ok:8000');
    const id = await submit(app, modelId, { webhook: { url: 'https://hooks.example.com/oc' } });
    await waitFor(async () => {
      const j = await getJob(app, id);
      return j.state === 'running' && j.stage === 'compress' ? j : null;
    }, 30_000);
    a.proc.kill('SIGKILL');
    assert.equal((await a.exit).signal, 'SIGKILL');

    // Worker B (in this process, so its finished events are observable) takes the stalled job over.
    process.env.TEST_ENGINE_MODE = 'ok:300';
    const platformB = await openPlatform(env.config, { migrate: false });
    platformB.jobs.events.onFinished(record);
    const b = await startCompressWorker(platformB, { engineModule: TEST_ENGINE, log: quiet, progressFlushMs: 100 });
    try {
      const done = await waitState(app, id, ['succeeded', 'failed'], 60_000);
      assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
      const j = await assertOneSetOfArtifacts(env, id);
      assert.equal(j.attempts, 2, 'the killed attempt and the one that finished');
      assert.deepEqual(
        finished.filter((e) => e.jobId === id).map((e) => e.state),
        ['succeeded'],
        'one succeeded event',
      );
      // The webhook outbox sees one terminal event: a second dispatch (e.g. from a sweep) reuses the row.
      const first = await createJobDelivery(env.platform.db, id, 'http://api.test');
      const again = await createJobDelivery(env.platform.db, id, 'http://api.test');
      assert.ok(first && again && first.id === again.id);
      assert.equal(await env.platform.db.webhookDelivery.count({ where: { jobId: id } }), 1);
    } finally {
      await b.close();
      await platformB.close();
    }
  });

  it('SIGTERM: the running job finishes, queued jobs stay queued for the next worker, nothing stuck running', async () => {
    const modelId = await upload(app);
    const w = await spawnWorker(env, 'ok:3000');
    const first = await submit(app, modelId);
    await waitFor(async () => ((await getJob(app, first)).state === 'running' ? true : null), 30_000);
    const second = await submit(app, modelId);
    w.proc.kill('SIGTERM');
    const exit = await w.exit;
    assert.equal(exit.code, 0, w.output());
    assert.match(w.output(), /closed/);
    assert.equal((await getJob(app, first)).state, 'succeeded', 'the running job was allowed to finish');
    await assertOneSetOfArtifacts(env, first);
    assert.equal((await getJob(app, second)).state, 'queued', 'a closing worker takes no new job');
    assert.equal(await env.platform.db.job.count({ where: { state: 'running' } }), 0);

    process.env.TEST_ENGINE_MODE = 'ok:200';
    const next = await startCompressWorker(env.platform, { engineModule: TEST_ENGINE, log: quiet });
    try {
      assert.equal((await waitState(app, second, ['succeeded', 'failed'])).state, 'succeeded');
      await assertOneSetOfArtifacts(env, second);
    } finally {
      await next.close();
    }
  });
});

describe('dependency restarts (throwaway servers)', () => {
  it('Redis crashes with jobs queued and running: 503 while down, no job lost, recovers without a restart', async () => {
    const redis = await ThrowawayRedis.start();
    let env: TestEnv | undefined;
    let app: FastifyInstance | undefined;
    let worker: Awaited<ReturnType<typeof startCompressWorker>> | undefined;
    try {
      env = await openTestEnv('redisrestart', { REDIS_URL: redis.url, STALLED_INTERVAL_MS: '1000' });
      app = await buildApp({ deps: env.platform, logger: false });
      process.env.TEST_ENGINE_MODE = 'ok:1500';
      worker = await startCompressWorker(env.platform, { engineModule: TEST_ENGINE, log: quiet, progressFlushMs: 100 });
      const modelId = await upload(app);
      const ids = [await submit(app, modelId), await submit(app, modelId), await submit(app, modelId)];
      await waitFor(async () => ((await getJob(app!, ids[0])).state === 'running' ? true : null), 30_000);

      await redis.kill();
      const ready = await app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 503);
      assert.equal(ready.json().checks.redis.ok, false);
      // Reads come from Postgres and keep working; a submission needs Redis and is refused with 503, promptly.
      assert.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${ids[1]}` })).statusCode, 200);
      const t0 = Date.now();
      const refused = await app.inject({
        method: 'POST',
        url: '/v1/jobs',
        payload: { modelId, recipe: { method: 'sparsity', pattern: '2:4' } },
      });
      assertProblem(refused, 503, 'unavailable');
      assert.ok(refused.headers['retry-after'], 'Retry-After on 503');
      assert.ok(Date.now() - t0 < 30_000, 'refused, not hung');
      const before = await env.platform.db.job.count();

      await redis.up();
      assert.equal(before, 3, 'the refused submission left no row');
      await waitFor(
        async () => ((await app!.inject({ method: 'GET', url: '/readyz' })).statusCode === 200 ? true : null),
        30_000,
      );
      for (const id of ids) {
        const done = await waitState(app, id, ['succeeded', 'failed'], 90_000);
        assert.equal(done.state, 'succeeded', `${id}: ${JSON.stringify(done.error)}`);
        await assertOneSetOfArtifacts(env, id);
      }
      // And new work flows again.
      const after = await submit(app, modelId);
      assert.equal((await waitState(app, after, ['succeeded', 'failed'])).state, 'succeeded');
    } finally {
      await bounded(worker?.close());
      await bounded(app?.close());
      await bounded(env?.cleanup());
      await redis.stop();
    }
  });

  it('Redis restarted empty (no persistence): every job still completes exactly once, 503 while down', async () => {
    const redis = await ThrowawayRedis.start({ persistent: false });
    let env: TestEnv | undefined;
    let server: RunningServer | undefined;
    const workers: Awaited<ReturnType<typeof startCompressWorker>>[] = [];
    try {
      env = await openTestEnv('redisempty', { REDIS_URL: redis.url, STALLED_INTERVAL_MS: '1000' });
      // The real API start (server.ts), so the reconciler it starts is the one under test.
      server = await startServer({ ...env.config, reconcileIntervalMs: 1000 }, { logger: false });
      env.platform.jobs.events.onFinished(record);
      const app = server.app;
      process.env.TEST_ENGINE_MODE = 'ok:6000'; // the job running through the restart outlives it
      const opts = { engineModule: TEST_ENGINE, log: quiet, progressFlushMs: 100 };
      workers.push(await startCompressWorker(env.platform, opts));
      const modelId = await upload(app);
      const running = await submit(app, modelId);
      await waitFor(async () => ((await getJob(app, running)).state === 'running' ? true : null), 30_000);
      const queued = [await submit(app, modelId), await submit(app, modelId)];
      process.env.TEST_ENGINE_MODE = 'ok:300';

      await redis.kill();
      assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 503);
      assert.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${queued[0]}` })).statusCode, 200);
      const refused = await app.inject({
        method: 'POST',
        url: '/v1/jobs',
        payload: { modelId, recipe: { method: 'sparsity', pattern: '2:4' } },
      });
      assertProblem(refused, 503, 'unavailable');
      assert.ok(refused.headers['retry-after'], 'Retry-After on 503');

      await redis.up(); // empty: every BullMQ entry is gone, Postgres still says queued/running
      // A second, idle worker: without the running job's lease it would take the re-enqueued copy and run it twice.
      workers.push(await startCompressWorker(env.platform, opts));
      await waitFor(async () =>
        (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200 ? true : null,
      );
      for (const id of [running, ...queued]) {
        const done = await waitState(app, id, ['succeeded', 'failed'], 60_000);
        assert.equal(done.state, 'succeeded', `${id}: ${JSON.stringify(done.error)}`);
        const j = await assertOneSetOfArtifacts(env, id);
        assert.equal(j.attempts, 1, `${id === running ? 'the running job' : 'a queued job'} ran once`);
        assert.deepEqual(
          finished.filter((e) => e.jobId === id).map((e) => e.state),
          ['succeeded'],
          'one succeeded event',
        );
      }
      // And new work flows, without restarting anything.
      const later = await submit(app, modelId);
      assert.equal((await waitState(app, later, ['succeeded', 'failed'])).state, 'succeeded');
    } finally {
      for (const w of workers) await bounded(w.close());
      await bounded(server?.close());
      await bounded(env?.cleanup());
      await redis.stop();
    }
  });

  it('Postgres goes away while the API serves: 503 problem+json, nothing half-written, recovers without a restart', async () => {
    const pg = await ThrowawayPostgres.start();
    let env: TestEnv | undefined;
    let app: FastifyInstance | undefined;
    try {
      env = await openTestEnv('pgrestart', { DATABASE_URL: pg.url });
      app = await buildApp({ deps: env.platform, logger: false });
      const modelId = await upload(app);
      assert.equal((await app.inject({ method: 'GET', url: `/v1/models/${modelId}` })).statusCode, 200);

      await pg.down();
      const ready = await app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 503);
      assert.equal(ready.json().checks.postgres.ok, false);
      for (const req of [
        { method: 'GET' as const, url: `/v1/models/${modelId}` },
        { method: 'GET' as const, url: '/v1/jobs' },
        { method: 'POST' as const, url: '/v1/jobs', payload: { modelId, recipe: { method: 'sparsity' } } },
      ]) {
        const res = await app.inject(req);
        assertProblem(res, 503, 'unavailable');
        assert.ok(res.headers['retry-after'], 'Retry-After on 503');
      }
      const up = await app.inject({
        method: 'POST',
        url: '/v1/models?name=m.onnx',
        headers: { 'content-type': 'application/octet-stream' },
        payload: Buffer.from(C.validModel()),
      });
      assertProblem(up, 503, 'unavailable');
      assert.deepEqual(await listFiles(env.platform.storage.stagingDir), [], 'no staging file left');

      await pg.up();
      await waitFor(
        async () => ((await app!.inject({ method: 'GET', url: '/readyz' })).statusCode === 200 ? true : null),
        30_000,
      );
      assert.equal((await app.inject({ method: 'GET', url: `/v1/models/${modelId}` })).statusCode, 200);
      assert.equal(await env.platform.db.model.count(), 1, 'the upload refused while Postgres was down left no row');
      const models = await listFiles(join((env.config.storage as { dir: string }).dir, 'tenants'));
      assert.equal(models.length, 1, `only the first model's file: ${models.join(', ')}`);
    } finally {
      await bounded(app?.close());
      await bounded(env?.platform.close());
      if (env) await rm(env.storageDir, { recursive: true, force: true });
      await pg.stop();
    }
  });
});
