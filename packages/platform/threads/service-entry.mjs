// Long-lived worker-thread entry: registers tsx for a TypeScript module, imports it, then serves calls {id, fn, args} with
// {id, ok, value} or {id, ok: false, error} (plain data: `name` and `code` survive, class identity does not).
import { parentPort, workerData } from 'node:worker_threads';

// TypeScript modules (the sources, tests' stand-ins) need tsx; the compiled build under dist/ is plain JavaScript and
// starts faster without it.
if (String(workerData.module).endsWith('.ts')) (await import('tsx/esm/api')).register();
const mod = await import(workerData.module);
parentPort.on('message', async ({ id, fn, args }) => {
  try {
    if (typeof mod[fn] !== 'function') throw new Error(`${workerData.module} has no export ${fn}`);
    parentPort.postMessage({ id, ok: true, value: await mod[fn](args) });
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    parentPort.postMessage({
      id,
      ok: false,
      error: {
        name: err.name,
        message: err.message,
        code: err.code,
        stack: err.stack,
        issues: err.issues,
        problems: err.problems,
      },
    });
  }
});
parentPort.postMessage({ ready: true });
