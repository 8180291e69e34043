// The producer side: enqueue, remove a job still waiting, queue depth. Owned by the API (and the CLI).
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { COMPRESS_JOB, QUEUE_NAMES, compressJobOptions, type CompressJobData, type Device } from './catalogue.js';
import { logErrors } from './redis.js';

/** Key of the sorted set where GPU workers record a heartbeat (score: last beat, ms). */
export const gpuWorkersKey = (prefix: string) => `${prefix}:gpu-workers`;
export const GPU_HEARTBEAT_MS = 10_000;

/** Redis (or another dependency) cannot be reached right now; the API answers 503. Recognised by name. */
export class DependencyUnavailableError extends Error {
  override readonly name = 'DependencyUnavailableError';
}

export class CompressQueues {
  readonly byDevice: Record<Device, Queue<CompressJobData>>;

  constructor(
    private readonly redis: Redis,
    readonly prefix: string,
    private readonly attempts: number,
    private readonly backoffMs: number,
  ) {
    const make = (d: Device) => {
      const queue = new Queue<CompressJobData>(QUEUE_NAMES[d], { connection: redis, prefix });
      // BullMQ re-emits the connection's errors on the queue; unheard, each one is console.error'd.
      logErrors(queue, `queue ${QUEUE_NAMES[d]}`);
      return queue;
    };
    this.byDevice = { cpu: make('cpu'), gpu: make('gpu') };
  }

  /**
   * Adds the job. Fails fast with DependencyUnavailableError while Redis is not connected (BullMQ would otherwise
   * wait for the connection with no limit, holding the HTTP request open) and after `timeoutMs` at most.
   */
  async enqueue(device: Device, data: CompressJobData, timeoutMs = 5_000): Promise<void> {
    if (this.redis.status !== 'ready') throw new DependencyUnavailableError(`redis is ${this.redis.status}`);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.byDevice[device].add(COMPRESS_JOB, data, compressJobOptions(data.jobId, this.attempts, this.backoffMs)),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new DependencyUnavailableError(`enqueue timed out after ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Removes a job that no worker holds. Returns false when it is active (locked by a worker) or gone; a locked job
   * is stopped through the cancel channel instead.
   */
  async removeIfWaiting(device: Device, jobId: string): Promise<boolean> {
    const job = await this.byDevice[device].getJob(jobId);
    if (!job) return false;
    const state = await job.getState();
    if (state === 'active' || state === 'completed' || state === 'failed') return false;
    try {
      await job.remove();
      return true;
    } catch {
      return false; // picked up between the state check and the removal
    }
  }

  /** Jobs waiting or delayed (retry backoff) per queue. */
  async depth(): Promise<Record<Device, { waiting: number; active: number; delayed: number }>> {
    const one = async (q: Queue) => {
      const c = await q.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      return { waiting: (c.waiting ?? 0) + (c.prioritized ?? 0), active: c.active ?? 0, delayed: c.delayed ?? 0 };
    };
    return { cpu: await one(this.byDevice.cpu), gpu: await one(this.byDevice.gpu) };
  }

  /** Whether some GPU worker beat within the last three heartbeats. */
  async gpuWorkerAlive(): Promise<boolean> {
    const n = await this.redis.zcount(gpuWorkersKey(this.prefix), Date.now() - 3 * GPU_HEARTBEAT_MS, '+inf');
    return n > 0;
  }

  async close(): Promise<void> {
    await Promise.all([this.byDevice.cpu.close(), this.byDevice.gpu.close()]);
  }
}
