// A module served from one long-lived worker thread: the thread (and tsx, and the module's imports) start once, not
// per call — an upload's inspection then costs the inspection, not a thread start. The thread exits after
// `idleMs` without calls and is started again on the next; if it dies, pending calls fail and the next call starts
// a fresh one.
import { Worker } from 'node:worker_threads';
import { ThreadError } from './run-in-thread.js';

const ENTRY = new URL('./service-entry.mjs', import.meta.url);

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

export class ThreadService {
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly module: string,
    private readonly opts: { idleMs?: number; maxOldGenerationSizeMb?: number } = {},
  ) {}

  private start(): Promise<void> {
    const worker = new Worker(ENTRY, {
      workerData: { module: this.module },
      resourceLimits: this.opts.maxOldGenerationSizeMb
        ? { maxOldGenerationSizeMb: this.opts.maxOldGenerationSizeMb }
        : undefined,
    });
    this.worker = worker;
    this.ready = new Promise<void>((resolve, reject) => {
      worker.on('message', (m: { ready?: true; id?: number; ok?: boolean; value?: unknown; error?: never }) => {
        if (m.ready) return resolve();
        const p = this.pending.get(m.id!);
        if (!p) return;
        this.pending.delete(m.id!);
        if (m.ok) p.resolve(m.value);
        else p.reject(new ThreadError(m.error ?? {}));
        this.armIdle();
      });
      const fail = (e: Error) => {
        if (this.worker === worker) {
          this.worker = undefined;
          this.ready = undefined;
        }
        reject(e);
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => fail(new Error(`service thread exited with code ${code}`)));
    });
    return this.ready;
  }

  private armIdle(): void {
    clearTimeout(this.idleTimer);
    if (this.pending.size > 0) return;
    this.worker?.unref(); // an idle service thread never keeps the process alive
    this.idleTimer = setTimeout(() => void this.close(), this.opts.idleMs ?? 60_000);
    this.idleTimer.unref();
  }

  async call<A, R>(fn: string, args: A): Promise<R> {
    clearTimeout(this.idleTimer);
    if (!this.worker) await this.start();
    else await this.ready;
    const id = this.nextId++;
    this.worker!.ref();
    return new Promise<R>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker!.postMessage({ id, fn, args });
    });
  }

  async close(): Promise<void> {
    clearTimeout(this.idleTimer);
    const w = this.worker;
    this.worker = undefined;
    this.ready = undefined;
    if (w) await w.terminate();
  }
}
