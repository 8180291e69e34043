// The compress worker: BullMQ Workers on the configured queues (compress-cpu and/or compress-gpu), a cancel
// subscriber that aborts jobs this process runs, and, on GPU workers, a heartbeat the API reads to route
// device:"auto" jobs. Stateless: run any number of them on any number of machines.
import { randomUUID } from 'node:crypto';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { onCancel } from '../../packages/platform/queue/cancel.js';
import { QUEUE_NAMES, type CompressJobData } from '../../packages/platform/queue/catalogue.js';
import { JobLeases } from '../../packages/platform/queue/job-lease.js';
import { GPU_HEARTBEAT_MS, gpuWorkersKey } from '../../packages/platform/queue/queues.js';
import { createRedis } from '../../packages/platform/queue/redis.js';
import { siblingModule } from '../../packages/platform/threads/module-url.js';
import type { Platform } from '../../packages/platform/platform.js';
import { processCompressJob, type ProcessorDeps } from './processor.js';
import { sweepJobScratch } from './scratch.js';

export const DEFAULT_ENGINE_MODULE = siblingModule(import.meta.url, 'engine');

export interface CompressWorkerOptions {
  /** Module exporting runCompression (tests substitute a deterministic one). @defaultValue ./engine.ts (./engine.js in the compiled build) */
  engineModule?: string;
  log?: ProcessorDeps['log'];
  progressFlushMs?: number;
  /** How often dead attempts' scratch folders are swept (besides at start). @defaultValue 600000 (10 min) */
  scratchSweepMs?: number;
}

export interface RunningWorker {
  workers: Worker[];
  running: Map<string, AbortController>;
  close(): Promise<void>;
}

const consoleLog: ProcessorDeps['log'] = {
  info: (o, m) => console.log(m, o),
  warn: (o, m) => console.warn(m, o),
  error: (o, m) => console.error(m, o),
};

export async function startCompressWorker(
  platform: Platform,
  opts: CompressWorkerOptions = {},
): Promise<RunningWorker> {
  const { config } = platform;
  const log = opts.log ?? consoleLog;
  const running = new Map<string, AbortController>();
  const deps: ProcessorDeps = {
    config,
    db: platform.db,
    storage: platform.storage,
    jobs: platform.jobs,
    log,
    engineModule: opts.engineModule ?? DEFAULT_ENGINE_MODULE,
    running,
    progressFlushMs: opts.progressFlushMs,
  };

  // Scratch folders of attempts whose worker was killed on this machine: nothing else would remove those of jobs that
  // have since finished elsewhere. At start, then every few minutes; housekeeping, so failures are only logged.
  const sweepScratch = async () => {
    try {
      const swept = await sweepJobScratch(platform.db, config.workDir);
      if (swept.length) log.info({ jobs: swept.length }, 'removed scratch folders of dead attempts');
    } catch (e) {
      log.warn({ err: e }, 'scratch sweep failed');
    }
  };
  await sweepScratch();
  const scratchTimer = setInterval(() => void sweepScratch(), opts.scratchSweepMs ?? 10 * 60 * 1000);
  scratchTimer.unref();

  const subscriber: Redis = createRedis(config.redisUrl, 'subscriber');
  await onCancel(subscriber, config.queuePrefix, (jobId) => {
    const c = running.get(jobId);
    if (c && !c.signal.aborted) {
      log.info({ jobId }, 'cancel requested: aborting');
      c.abort();
    }
  });

  const connections: Redis[] = [];
  const leases = new JobLeases(config.databaseUrl);
  const workers = config.workerQueues.map((device) => {
    const connection = createRedis(config.redisUrl, 'worker');
    connections.push(connection);
    const worker = new Worker<CompressJobData>(
      QUEUE_NAMES[device],
      async (job, _token, signal) => {
        // BullMQ's own cancel (worker.cancelJob) arrives here; forward it to the job's controller.
        signal?.addEventListener('abort', () => running.get(job.data.jobId)?.abort(), { once: true });
        // A lease (Postgres advisory lock) while it runs: the queue reconciler never re-enqueues a leased job, and
        // two attempts never run at once. BullMQ hands a job on when its lock was not renewed in time, which a
        // starved event loop (CPU load) causes as surely as a dead worker; the lease tells them apart: a dead
        // worker's session is gone and its lease with it, a stalled-but-alive one still holds it. This attempt then
        // waits for that one to end (its result, or its failure handed back to the queue, is then in the row).
        const jobId = job.data.jobId;
        const leased = await leases.holdWhenFree(jobId, {
          pollMs: Math.min(1000, config.stalledIntervalMs),
          stop: () => worker.closing !== undefined || signal?.aborted === true,
          onWait: () => log.warn({ jobId }, 'job taken over from a stalled worker that still runs it: waiting for it'),
        });
        if (!leased) return 'handed back: another attempt still runs it';
        try {
          return await processCompressJob(deps, job);
        } finally {
          await leases.release(jobId);
        }
      },
      {
        connection,
        prefix: config.queuePrefix,
        concurrency: config.workerConcurrency,
        lockDuration: config.stalledIntervalMs,
        stalledInterval: config.stalledIntervalMs,
        maxStalledCount: 2,
      },
    );
    worker.on('error', (e) => log.error({ err: e, queue: QUEUE_NAMES[device] }, 'worker error'));
    worker.on('stalled', (jobId) => log.warn({ jobId }, 'job stalled: its worker stopped; handing it to another'));
    return worker;
  });

  let heartbeat: NodeJS.Timeout | undefined;
  const workerId = randomUUID();
  if (config.workerQueues.includes('gpu')) {
    const key = gpuWorkersKey(config.queuePrefix);
    const beat = () =>
      platform.redis
        .multi()
        .zadd(key, Date.now(), workerId)
        .zremrangebyscore(key, 0, Date.now() - 10 * GPU_HEARTBEAT_MS)
        .exec()
        .catch((e) => log.warn({ err: e }, 'gpu heartbeat failed'));
    await beat();
    heartbeat = setInterval(() => void beat(), GPU_HEARTBEAT_MS);
  }

  return {
    workers,
    running,
    async close() {
      clearInterval(heartbeat);
      clearInterval(scratchTimer);
      if (heartbeat) await platform.redis.zrem(gpuWorkersKey(config.queuePrefix), workerId).catch(() => {});
      // Graceful: let running jobs finish (BullMQ waits); SIGINT twice to abort them instead.
      await Promise.all(workers.map((w) => w.close()));
      subscriber.disconnect();
      for (const c of connections) c.disconnect();
      await leases.close();
    },
  };
}
