// Forwards the compress queues' BullMQ events (a Redis stream per queue, written by workers on any machine) to a
// JobEventSubscriber: `progress` (the worker's job.updateProgress payload: stage, fraction and, when sent, layer)
// and the active/completed/failed transitions, as state hints that make SSE streams re-read the job row at once.
// BullMQ job ids are the job row ids (see queue/catalogue.ts), so no lookup is needed.
import { QueueEvents, type ConnectionOptions } from 'bullmq';
import type { JobEventSubscriber, JobProgressDetail } from './bus.js';

function asProgress(data: unknown): JobProgressDetail | null {
  if (typeof data !== 'object' || data === null) return null;
  const d = data as Record<string, unknown>;
  if (typeof d.fraction !== 'number' || typeof d.stage !== 'string') return null;
  const layer = d.layer as JobProgressDetail['layer'] | undefined;
  return {
    stage: d.stage,
    fraction: d.fraction,
    ...(layer && typeof layer.index === 'number' && typeof layer.total === 'number' ? { layer } : {}),
    ...(typeof d.message === 'string' ? { message: d.message } : {}),
  };
}

export class BullProgressBridge {
  private readonly events: QueueEvents[];

  /** `connection`: options (e.g. `{url}`), not a client: each QueueEvents opens, blocks on and closes its own. */
  constructor(subscriber: JobEventSubscriber, queueNames: string[], prefix: string, connection: ConnectionOptions) {
    this.events = queueNames.map((name) => {
      const qe = new QueueEvents(name, { connection, prefix, autorun: true });
      const at = () => new Date().toISOString();
      qe.on('progress', ({ jobId, data }) => {
        const progress = asProgress(data);
        if (progress) subscriber.deliver({ type: 'progress', jobId, progress, at: at() });
      });
      qe.on('active', ({ jobId }) => subscriber.deliver({ type: 'state', jobId, state: 'running', at: at() }));
      qe.on('completed', ({ jobId }) => subscriber.deliver({ type: 'state', jobId, state: 'finished', at: at() }));
      qe.on('failed', ({ jobId }) => subscriber.deliver({ type: 'state', jobId, state: 'failed-attempt', at: at() }));
      qe.on('error', () => undefined); // reconnects on its own; SSE streams also re-read the row
      return qe;
    });
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all(this.events.map((e) => e.waitUntilReady()));
  }

  async close(): Promise<void> {
    await Promise.all(this.events.map((e) => e.close()));
  }
}
