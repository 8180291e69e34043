// Connections to a Redis that is not there: ioredis and BullMQ emit 'error' on every reconnect attempt. Without a
// listener ioredis prints "[ioredis] Unhandled error event" and BullMQ console.errors each one; with ours the errors
// are logged once per interval, and the URL's password never reaches the log.
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { CompressQueues } from '../../packages/platform/queue/queues.js';
import { createRedis, redactRedisUrl } from '../../packages/platform/queue/redis.js';
import { createWebhookQueue } from '../../packages/platform/webhooks/queue.js';
import { freePort } from '../reliability/servers.js';
import { waitFor } from './helpers.js';

const consoleError = console.error;
after(() => {
  console.error = consoleError;
});

it('a connection (and BullMQ queues on it) to a dead Redis: no unhandled error, one log line, no password', async () => {
  const port = await freePort(); // nothing listens there
  const url = `redis://oc-user:s3cret-pa55@127.0.0.1:${port}/2`;
  const unhandled: string[] = [];
  console.error = (...args: unknown[]) => void unhandled.push(args.map(String).join(' '));
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown) => void uncaught.push(e);
  process.on('uncaughtException', onUncaught);

  const lines: string[] = [];
  const redis = createRedis(url, 'queue', { sink: (l) => void lines.push(l), intervalMs: 60_000 });
  const queues = new CompressQueues(redis, 'oc-dead', 1, 100);
  const webhooks = createWebhookQueue(redis, 'oc-dead'); // the API's and the job-finished notifier's queue
  let attempts = 0;
  redis.on('reconnecting', () => attempts++);
  try {
    await waitFor(async () => attempts >= 4, 20_000); // several failed connects, each an 'error'
    // A queue call fails as an error of that call (the caller's to handle), not as an unhandled event.
    await assert.rejects(queues.enqueue('cpu', { jobId: '00000000-0000-4000-8000-00000000000a', tenantId: 't' }));
  } finally {
    redis.disconnect();
    await queues.close().catch(() => {});
    await webhooks.close().catch(() => {});
    process.off('uncaughtException', onUncaught);
    console.error = consoleError;
  }
  assert.deepEqual(uncaught, []);
  assert.deepEqual(unhandled, [], 'nothing printed as unhandled');
  assert.equal(lines.length, 1, `rate-limited to one line per interval: ${lines.join(' | ')}`);
  assert.match(lines[0], new RegExp(`redis queue connection to redis://127\\.0\\.0\\.1:${port}/2: .*ECONNREFUSED`));
  assert.doesNotMatch(lines.join('\n'), /s3cret|oc-user/);
});

it('redactRedisUrl keeps host, port and db, drops credentials', () => {
  assert.equal(redactRedisUrl('rediss://u:p%40ss@cache.internal:6380/3'), 'rediss://cache.internal:6380/3');
  assert.equal(redactRedisUrl('redis://127.0.0.1:6379'), 'redis://127.0.0.1:6379');
  assert.equal(redactRedisUrl('not a url :pw@'), '<invalid redis url>');
});
