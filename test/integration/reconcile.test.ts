// The queue reconciler against the real Postgres and Redis, no workers: each row/BullMQ state combination it may
// meet, set up by hand (the end-to-end proof with a Redis restarted empty is in test/reliability/faults.test.ts).
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { UnrecoverableError, Worker } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../apps/api/app.js';
import { ConfigError, loadConfig } from '../../packages/platform/config/config.js';
import type { JobFinishedEvent } from '../../packages/platform/jobs/events.js';
import { QUEUE_NAMES } from '../../packages/platform/queue/catalogue.js';
import { JobLeases, heldJobLeases } from '../../packages/platform/queue/job-lease.js';
import { reconcileQueue, type ReconcileDeps } from '../../packages/platform/queue/reconcile.js';
import { createRedis } from '../../packages/platform/queue/redis.js';
import { validModel } from '../reliability/corpus.js';
import { openTestEnv, type TestEnv } from './helpers.js';

const quiet = { info() {}, warn() {}, error() {} };
const finished: JobFinishedEvent[] = [];
let unhook: () => void;
let env: TestEnv;
let app: FastifyInstance;
let deps: ReconcileDeps;
const cpu = () => env.platform.queues.byDevice.cpu;

before(async () => {
  env = await openTestEnv('reconcile');
  app = await buildApp({ deps: env.platform, logger: false });
  deps = { ...env.platform, log: quiet };
  unhook = env.platform.jobs.events.onFinished((e) => void finished.push(e));
});
after(async () => {
  unhook?.();
  await app?.close();
  await env?.cleanup();
});

let modelId: string | undefined;
async function submit(): Promise<string> {
  if (!modelId) {
    const up = await app.inject({
      method: 'POST',
      url: '/v1/models?name=m.onnx',
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.from(validModel()),
    });
    modelId = up.json().id as string;
  }
  const res = await app.inject({
    method: 'POST',
    url: '/v1/jobs',
    payload: { modelId, recipe: { method: 'sparsity', pattern: '2:4' } },
  });
  assert.equal(res.statusCode, 202, res.body);
  return res.json().id;
}

/** What a Redis that lost its data leaves: the row, no BullMQ entry. */
async function forgetInBullmq(id: string) {
  await (await cpu().getJob(id))!.remove();
  assert.equal(await cpu().getJobState(id), 'unknown');
}

it('queued or running rows whose BullMQ entry is gone are re-enqueued under their own id, once', async () => {
  const queued = await submit();
  const running = await submit();
  const untouched = await submit(); // still waiting in BullMQ
  await forgetInBullmq(queued);
  await forgetInBullmq(running);
  await env.platform.db.job.update({ where: { id: running }, data: { state: 'running', attempts: 1 } });

  const r = await reconcileQueue(deps);
  assert.equal(r.checked, 3);
  assert.deepEqual(r.requeued.sort(), [queued, running].sort());
  for (const id of [queued, running, untouched]) assert.equal(await cpu().getJobState(id), 'waiting');
  const again = await reconcileQueue(deps);
  assert.deepEqual(again.requeued, [], 'a second pass finds nothing to do');
  assert.equal((await cpu().getJobCounts('waiting')).waiting, 3, 'no job added twice');
  await cpu().obliterate({ force: true });
  await env.platform.db.job.updateMany({ data: { state: 'cancelled' } });
});

it('a running row without a BullMQ entry whose lease a live worker holds is left alone until the lease goes', async () => {
  const id = await submit();
  await forgetInBullmq(id);
  await env.platform.db.job.update({ where: { id }, data: { state: 'running', attempts: 1 } });
  const worker = new JobLeases(env.config.databaseUrl);
  const other = new JobLeases(env.config.databaseUrl);
  try {
    assert.equal(await worker.hold(id), true);
    assert.equal(await worker.hold(id), false, 'a second hold in the same process is refused (locks are re-entrant)');
    assert.equal(await other.hold(id), false, 'another process cannot take it');
    assert.deepEqual([...(await heldJobLeases(env.platform.db, [id]))], [id]);

    const r = await reconcileQueue(deps);
    assert.deepEqual(r.runningElsewhere, [id]);
    assert.deepEqual(r.requeued, []);
    assert.equal(await cpu().getJobState(id), 'unknown');

    await worker.close(); // the worker's session ends (as when it is killed): Postgres drops the lock
    assert.deepEqual([...(await heldJobLeases(env.platform.db, [id]))], []);
    assert.deepEqual((await reconcileQueue(deps)).requeued, [id]);
    assert.equal(await cpu().getJobState(id), 'waiting');
  } finally {
    await worker.close();
    await other.close();
  }
  await cpu().obliterate({ force: true });
  await env.platform.db.job.updateMany({ data: { state: 'cancelled' } });
});

it('a stale completed entry is replaced; a job BullMQ failed while its row was active is marked failed once', async () => {
  const stale = await submit();
  const abandoned = await submit();
  await env.platform.db.job.updateMany({ where: { id: { in: [stale, abandoned] } }, data: { state: 'running' } });
  // Move both through a manual worker: one completed (as BullMQ leaves a copy it finished while the row still needs a run), one failed.
  const connection = createRedis(env.config.redisUrl, 'worker');
  const manual = new Worker(QUEUE_NAMES.cpu, null, { connection, prefix: env.config.queuePrefix });
  try {
    for (let i = 0; i < 2; i++) {
      const job = (await manual.getNextJob('t'))!;
      if (job.id === stale) await job.moveToCompleted('running in another worker', 't', false);
      else await job.moveToFailed(new UnrecoverableError('job stalled more than allowable limit'), 't', false);
    }
  } finally {
    await manual.close();
    connection.disconnect();
  }
  assert.equal(await cpu().getJobState(stale), 'completed');
  assert.equal(await cpu().getJobState(abandoned), 'failed');

  const r = await reconcileQueue(deps);
  assert.deepEqual(r.requeued, [stale]);
  assert.deepEqual(r.failed, [abandoned]);
  assert.equal(await cpu().getJobState(stale), 'waiting');
  const row = await env.platform.db.job.findUniqueOrThrow({ where: { id: abandoned } });
  assert.equal(row.state, 'failed');
  assert.equal((row.error as { code: string }).code, 'internal');
  assert.deepEqual(
    finished.filter((e) => e.jobId === abandoned).map((e) => e.state),
    ['failed'],
  );
  assert.deepEqual((await reconcileQueue(deps)).failed, [], 'marked once');
});

it('a pass while Redis is unreachable fails fast instead of hanging', async () => {
  const redis = createRedis('redis://127.0.0.1:1', 'queue', { sink: () => {} });
  try {
    await assert.rejects(reconcileQueue({ ...deps, redis }), { name: 'DependencyUnavailableError' });
  } finally {
    redis.disconnect();
  }
});

it('RECONCILE_INTERVAL_MS: 60 s by default, 0 allowed (start and reconnects only), negatives refused', () => {
  assert.equal(loadConfig({}).reconcileIntervalMs, 60_000);
  assert.equal(loadConfig({ RECONCILE_INTERVAL_MS: '0' }).reconcileIntervalMs, 0);
  assert.throws(
    () => loadConfig({ RECONCILE_INTERVAL_MS: '-5' }),
    (e: Error) => e instanceof ConfigError && /^RECONCILE_INTERVAL_MS/.test(e.message),
  );
});
