// A worker process for the e2e tests (SSE across processes, webhooks, the browser test): the team's compress worker
// plus the webhook worker and the job-finished hooks, configured from the environment like `onnx-compress worker`.
// Prints "ready" once listening on the queues; exits on SIGTERM.
import { loadConfig } from '../../packages/platform/config/config.js';
import { openPlatform } from '../../packages/platform/runtime.js';
import { loadWebhookConfig } from '../../packages/platform/webhooks/config.js';
import { startCompressWorker } from '../../workers/compress/worker.js';
import { registerWebhookAndLiveHooks } from '../../workers/webhooks/hooks.js';
import { startWebhookWorker } from '../../workers/webhooks/worker.js';

const config = loadConfig();
const webhooks = loadWebhookConfig();
const platform = await openPlatform(config, { migrate: false });
const quiet = {
  info: () => {},
  warn: (o: object, m?: string) => console.error(m, o),
  error: (o: object, m?: string) => console.error(m, o),
};
const removeHooks = registerWebhookAndLiveHooks({
  db: platform.db,
  redis: platform.redis,
  prefix: config.queuePrefix,
  config: webhooks,
});
const compress = await startCompressWorker(platform, { log: quiet, progressFlushMs: 100 });
const delivery = startWebhookWorker({
  db: platform.db,
  connection: { url: config.redisUrl, maxRetriesPerRequest: null },
  prefix: config.queuePrefix,
  config: webhooks,
  log: quiet,
});
await Promise.all([...compress.workers.map((w) => w.waitUntilReady()), delivery.worker.waitUntilReady()]);
console.log('ready');

process.once('SIGTERM', () => {
  void (async () => {
    await compress.close();
    await delivery.close();
    await removeHooks();
    await platform.close();
    process.exit(0);
  })();
});
