// Calls inspect.ts in a worker thread and sorts its failures into "the file is bad" (typed input errors, shown to
// the client) and everything else (a 500).
import { isInputError } from '../../../packages/engine/job.js';
import type { DatasetInspection } from '../../../packages/engine/data/index.js';
import { siblingModule } from '../../../packages/platform/threads/module-url.js';
import { ThreadService } from '../../../packages/platform/threads/thread-service.js';
import type { ModelInspection } from './inspect.js';

const MODULE = siblingModule(import.meta.url, 'inspect');

export type InspectOutcome<T> = { ok: true; value: T } | { ok: false; code: string; message: string };

/** One inspector thread per process, started on the first upload and stopped after a minute without one. */
const inspector = new ThreadService(MODULE, { idleMs: 60_000 });

/**
 * Inspections handed to the thread at once. Each one reads its whole file and decodes it (a 50 MB model holds ~2×
 * its size while it is inspected); the thread runs them interleaved, so a burst of 50 uploads held all 50 models at
 * once (API RSS 1.8–2.9 GB). One thread does the CPU work either way: two in flight keep it busy (one decodes while
 * the next reads) and bound memory to two models; the rest wait their turn, in arrival order.
 */
export const INSPECT_CONCURRENCY = 2;

let inFlight = 0;
let peakInFlight = 0;
const waiting: (() => void)[] = [];

/** Inspections in the thread now, and the most there have been at once (tests; the benchmark). */
export function inspectorLoad(): { inFlight: number; peakInFlight: number; waiting: number } {
  return { inFlight, peakInFlight, waiting: waiting.length };
}

async function call<A, T>(fn: string, args: A): Promise<InspectOutcome<T>> {
  if (inFlight >= INSPECT_CONCURRENCY) await new Promise<void>((resolve) => waiting.push(resolve));
  else inFlight++; // a woken waiter inherits the slot of the call that finished (see finally)
  peakInFlight = Math.max(peakInFlight, inFlight);
  try {
    return { ok: true, value: await inspector.call<A, T>(fn, args) };
  } catch (e) {
    if (isInputError(e)) return { ok: false, code: e.code, message: e.message };
    throw e;
  } finally {
    const next = waiting.shift();
    if (next) next();
    else inFlight--;
  }
}

export const inspectModel = (path: string) => call<{ path: string }, ModelInspection>('inspectModelFile', { path });

export const inspectDataset = (path: string, sizeBytes: number, clientName: string) =>
  call<{ path: string; sizeBytes: number; clientName: string }, DatasetInspection>('inspectDatasetFile', {
    path,
    sizeBytes,
    clientName,
  });
