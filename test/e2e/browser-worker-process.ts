// A worker process for the e2e tests (SSE across processes, webhooks, the browser test): the team's compress worker
// plus the webhook delivery worker (finished jobs are announced by the platform itself), configured from the environment like `onnx-compress worker`.
// Prints "ready" once listening on the queues; exits on SIGTERM.
import { loadConfig } from '../../packages/platform/config/config.js';
import { openPlatform } from '../../packages/platform/platform.js';
import { startCompressWorker } from '../../workers/compress/worker.js';
import { startWebhookSide } from '../../workers/webhooks/start.js';

const config = loadConfig();
const platform = await openPlatform(config, { migrate: false });
const quiet = {
  info: () => {},
  warn: (o: object, m?: string) => console.error(m, o),
  error: (o: object, m?: string) => console.error(m, o),
};
const webhooks = await startWebhookSide(platform, { log: quiet });
const compress = await startCompressWorker(platform, { log: quiet, progressFlushMs: 100 });
await Promise.all(compress.workers.map((w) => w.waitUntilReady()));
console.log('ready');

process.once('SIGTERM', () => {
  void (async () => {
    await compress.close();
    await webhooks.close();
    await platform.close();
    process.exit(0);
  })();
});
