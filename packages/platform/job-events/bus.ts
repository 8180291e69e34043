// Live job events across processes: workers (and the API, for cancels) publish state changes and progress on a Redis
// channel per job; each API process holds one subscriber connection and fans messages out to its SSE streams.
// Pub/sub is fire-and-forget (a message sent while a subscriber reconnects is lost), so readers also re-read the
// jobs row now and then: Postgres stays the source of truth, Redis only makes updates immediate.
import type { Redis } from 'ioredis';

export interface JobProgressDetail {
  stage: string;
  /** 0–1 overall. */
  fraction: number;
  layer?: { index: number; total: number; name: string };
  message?: string;
}

export type JobStreamEvent =
  | { type: 'state'; jobId: string; state: string; at: string; error?: { code: string; message: string } | null }
  | { type: 'progress'; jobId: string; progress: JobProgressDetail; at: string };

export const jobEventsChannel = (prefix: string, jobId: string) => `${prefix}:job-events:${jobId}`;

export async function publishJobEvent(redis: Redis, prefix: string, event: JobStreamEvent): Promise<void> {
  await redis.publish(jobEventsChannel(prefix, event.jobId), JSON.stringify(event));
}

/** Convenience for workers: a progress event from the engine's onProgress callback. */
export function publishJobProgress(redis: Redis, prefix: string, jobId: string, progress: JobProgressDetail) {
  return publishJobEvent(redis, prefix, { type: 'progress', jobId, progress, at: new Date().toISOString() });
}

export function publishJobState(
  redis: Redis,
  prefix: string,
  jobId: string,
  state: string,
  error?: { code: string; message: string } | null,
) {
  return publishJobEvent(redis, prefix, { type: 'state', jobId, state, at: new Date().toISOString(), error });
}

export type JobEventListener = (event: JobStreamEvent) => void;

/**
 * One Redis connection in subscriber mode shared by every stream of a process. Channels are subscribed while at
 * least one listener wants them.
 */
export class JobEventSubscriber {
  private readonly listeners = new Map<string, Set<JobEventListener>>();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    redis.on('message', (channel: string, message: string) => {
      const set = this.listeners.get(channel);
      if (!set) return;
      let event: JobStreamEvent;
      try {
        event = JSON.parse(message) as JobStreamEvent;
      } catch {
        return; // not ours
      }
      for (const l of set) l(event);
    });
  }

  /** Hands an event from another source (the BullMQ bridge) to this process's listeners of that job. */
  deliver(event: JobStreamEvent): void {
    const set = this.listeners.get(jobEventsChannel(this.prefix, event.jobId));
    if (set) for (const l of set) l(event);
  }

  /** Resolves once Redis confirmed the subscription; returns the function that removes the listener. */
  async subscribe(jobId: string, listener: JobEventListener): Promise<() => Promise<void>> {
    const channel = jobEventsChannel(this.prefix, jobId);
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    set.add(listener);
    await this.redis.subscribe(channel);
    return async () => {
      const s = this.listeners.get(channel);
      if (!s) return;
      s.delete(listener);
      if (s.size === 0) {
        this.listeners.delete(channel);
        await this.redis.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  get activeChannels(): number {
    return this.listeners.size;
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.redis.disconnect();
  }
}
