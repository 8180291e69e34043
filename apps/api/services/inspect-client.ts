// Calls inspect.ts in a worker thread and sorts its failures into "the file is bad" (typed input errors, shown to
// the client) and everything else (a 500).
import { isInputError } from '../../../packages/engine/job.js';
import { ThreadService } from '../../../packages/platform/threads/thread-service.js';
import type { DatasetInspection, ModelInspection } from './inspect.js';

const MODULE = new URL('./inspect.js', import.meta.url).href.replace(/\.js$/, '.ts');

export type InspectOutcome<T> = { ok: true; value: T } | { ok: false; code: string; message: string };

/** One inspector thread per process, started on the first upload and stopped after a minute without one. */
const inspector = new ThreadService(MODULE, { idleMs: 60_000 });

async function call<A, T>(fn: string, args: A): Promise<InspectOutcome<T>> {
  try {
    return { ok: true, value: await inspector.call<A, T>(fn, args) };
  } catch (e) {
    if (isInputError(e)) return { ok: false, code: e.code, message: e.message };
    throw e;
  }
}

export const inspectModel = (path: string) => call<{ path: string }, ModelInspection>('inspectModelFile', { path });

export const inspectDataset = (path: string, sizeBytes: number, clientName: string) =>
  call<{ path: string; sizeBytes: number; clientName: string }, DatasetInspection>('inspectDatasetFile', {
    path,
    sizeBytes,
    clientName,
  });
