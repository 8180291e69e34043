// Runs an exported function of a TypeScript module in a worker thread, so that ONNX Runtime's synchronous native
// work and the engine's maths never block the event loop of the API or of the worker's queue connection (which
// must keep renewing its BullMQ lock). Abort: the thread's AbortSignal fires; if the function has not returned
// within `abortGraceMs`, the thread is terminated.
import { Worker } from 'node:worker_threads';

const ENTRY = new URL('./thread-entry.mjs', import.meta.url);

/** Error re-created in the parent from the plain data a thread sent (recognised by `name`, not `instanceof`). */
export class ThreadError extends Error {
  code?: string;
  issues?: unknown;
  problems?: unknown;
  artifacts?: { name: string; path: string; sizeBytes: number }[];
  constructor(data: {
    name?: string;
    message?: string;
    code?: string;
    stack?: string;
    issues?: unknown;
    problems?: unknown;
    artifacts?: { name: string; path: string; sizeBytes: number }[];
  }) {
    super(data.message ?? 'worker thread failed');
    this.name = data.name ?? 'Error';
    if (data.code !== undefined) this.code = data.code;
    if (data.issues !== undefined) this.issues = data.issues;
    if (data.problems !== undefined) this.problems = data.problems;
    if (data.artifacts !== undefined) this.artifacts = data.artifacts;
    if (data.stack) this.stack = data.stack;
  }
}

export class AbortError extends Error {
  override readonly name = 'AbortError';
  constructor(message = 'aborted') {
    super(message);
  }
}

export interface RunInThreadOptions<P> {
  signal?: AbortSignal;
  onProgress?: (value: P) => void;
  /** How long an aborted function may take to return before its thread is terminated. @defaultValue 10000 */
  abortGraceMs?: number;
  /** V8 heap cap of the thread in MiB (typed arrays live outside it). */
  maxOldGenerationSizeMb?: number;
}

export function runInThread<A, R, P = unknown>(
  module: string | URL,
  fn: string,
  args: A,
  opts: RunInThreadOptions<P> = {},
): Promise<R> {
  const worker = new Worker(ENTRY, {
    workerData: { module: String(module), fn, args },
    resourceLimits: opts.maxOldGenerationSizeMb ? { maxOldGenerationSizeMb: opts.maxOldGenerationSizeMb } : undefined,
  });
  return new Promise<R>((resolve, reject) => {
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;
    const finish = (fnResult: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(killTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      void worker.terminate();
      fnResult();
    };
    const onAbort = () => {
      worker.postMessage({ type: 'abort' });
      killTimer = setTimeout(
        () => finish(() => reject(new AbortError('aborted (the thread did not stop in time and was terminated)'))),
        opts.abortGraceMs ?? 10_000,
      );
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    worker.on(
      'message',
      (m: { type: string; value?: unknown; error?: ConstructorParameters<typeof ThreadError>[0] }) => {
        if (m.type === 'progress') opts.onProgress?.(m.value as P);
        else if (m.type === 'result') finish(() => resolve(m.value as R));
        else if (m.type === 'error') finish(() => reject(new ThreadError(m.error ?? {})));
      },
    );
    worker.on('error', (e) => finish(() => reject(e)));
    worker.on('exit', (code) =>
      finish(() => reject(new Error(`worker thread exited with code ${code} before returning a result`))),
    );
  });
}
