// Worker-thread entry: registers tsx when the module is TypeScript (see below), imports the module
// named by the parent and calls one exported function with (args, {signal, progress}). Messages to the parent:
// {type:'progress', value} · {type:'result', value} · {type:'error', error}. Message from the parent: {type:'abort'}.
import { parentPort, workerData } from 'node:worker_threads';

// TypeScript modules (the sources, tests' stand-ins) need tsx; the compiled build under dist/ is plain JavaScript and
// starts faster without it.
if (String(workerData.module).endsWith('.ts')) (await import('tsx/esm/api')).register();
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
      // Files a failed job still produced (InputErrorWithArtifacts: a search's report and plot), as plain data.
      artifacts: Array.isArray(err.artifacts)
        ? err.artifacts.map(({ name, path, sizeBytes }) => ({ name, path, sizeBytes }))
        : undefined,
    },
  });
}
