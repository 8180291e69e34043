// Worker-thread entry: registers tsx (the project runs TypeScript sources with no build step), imports the module
// named by the parent and calls one exported function with (args, {signal, progress}). Messages to the parent:
// {type:'progress', value} · {type:'result', value} · {type:'error', error}. Message from the parent: {type:'abort'}.
import { register } from 'tsx/esm/api';
import { parentPort, workerData } from 'node:worker_threads';

register();
const controller = new AbortController();
parentPort.on('message', (m) => {
  if (m && m.type === 'abort') controller.abort(Object.assign(new Error('aborted'), { name: 'AbortError' }));
});
try {
  const mod = await import(workerData.module);
  const fn = mod[workerData.fn];
  if (typeof fn !== 'function') throw new Error(`${workerData.module} has no export ${workerData.fn}`);
  const value = await fn(workerData.args, {
    signal: controller.signal,
    progress: (value) => parentPort.postMessage({ type: 'progress', value }),
  });
  parentPort.postMessage({ type: 'result', value });
} catch (e) {
  const err = e instanceof Error ? e : new Error(String(e));
  // Plain data only: class identity does not survive the thread boundary; `name` and `code` do.
  parentPort.postMessage({
    type: 'error',
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
