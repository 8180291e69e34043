// Cancelling a running job across processes: the API publishes the job id on a Redis channel; every worker
// subscribes and aborts the AbortSignal of the job if it runs it. The jobs row (cancel_requested_at) is the durable
// record, so a worker that missed the message still sees the request when it next writes progress.
import type { Redis } from 'ioredis';

export const cancelChannel = (prefix: string) => `${prefix}:cancel`;

export async function publishCancel(redis: Redis, prefix: string, jobId: string): Promise<void> {
  await redis.publish(cancelChannel(prefix), jobId);
}

/** Subscribes `subscriber` (a dedicated connection: a subscribed ioredis client can run nothing else). */
export async function onCancel(subscriber: Redis, prefix: string, handler: (jobId: string) => void): Promise<void> {
  const channel = cancelChannel(prefix);
  subscriber.on('message', (ch: string, message: string) => {
    if (ch === channel) handler(message);
  });
  await subscriber.subscribe(channel);
}
