// A compress worker as its own process, for the fault tests (SIGKILL mid-job, SIGTERM while running): the real
// worker (BullMQ, Postgres, storage, engine thread) with the deterministic engine stand-in the worker tests use,
// configured from the environment like `onnx-compress worker` (TEST_ENGINE_MODE sets the stand-in's behaviour).
// Prints "ready" once it consumes jobs; SIGTERM/SIGINT close it gracefully (running jobs finish first).
import { loadConfig } from '../../packages/platform/config/config.js';
import { openPlatform } from '../../packages/platform/platform.js';
import { startCompressWorker } from '../../workers/compress/worker.js';
import { closeOnSignals } from '../../apps/api/server.js';

const engineModule = new URL('../../test/integration/fixtures/test-engine.ts', import.meta.url).href;
const config = loadConfig();
const platform = await openPlatform(config, { migrate: false });
const worker = await startCompressWorker(platform, {
  engineModule,
  progressFlushMs: 100,
  log: { info() {}, warn() {}, error: (o, m) => console.error(m, o) },
});
closeOnSignals(async () => {
  await worker.close();
  await platform.close();
  console.log('closed');
}, console.log);
console.log('ready');
