// Seconds and peak memory per stage, for report.stages (load, calibrate, compress, write, evaluate, latency).
// Stages nest: calibration passes run lazily inside the method's run, so while one runs the compress stage's clock
// stops and the calibrate stage's runs; a stage entered several times (calibrate, once per pass) adds up.
//
// peakRssBytes is the process's peak resident set during the stage, from two sources: process.resourceUsage().maxRSS
// is the kernel's exact high-water mark but only ever rises, so when it rose during a stage the stage's peak is that
// new mark, exactly; otherwise the stage stayed below an earlier peak and its own peak is the highest
// process.memoryUsage.rss() seen at the stage's edges and by a sampler every SAMPLE_MS (a lower bound: the sampler
// cannot run while synchronous maths holds the event loop). The process is the whole worker (API or CLI included).
import type { ExecutionProvider } from '../runtime/session.js';

export type StageName = 'load' | 'calibrate' | 'compress' | 'write' | 'evaluate' | 'latency';

export interface StageReport {
  name: StageName;
  seconds: number;
  peakRssBytes: number;
  /** Where the stage's heavy work ran: ONNX Runtime's provider for sessions, 'cpu' for the engine's own maths. */
  executionProvider: ExecutionProvider;
  /** Calibration passes over the data (calibrate only). */
  passes?: number;
}

const SAMPLE_MS = 100;

interface Active {
  row: StageReport;
  since: number;
}

export class StageClock {
  private readonly rows: StageReport[] = [];
  private readonly stack: Active[] = [];
  private lastMaxRss = maxRssBytes();
  private timer?: ReturnType<typeof setInterval>;

  /**
   * Runs `fn` as (part of) stage `name`. `executionProvider` is read when the stage ends (a session opened inside
   * it decides it). @returns fn's result
   */
  async stage<T>(
    name: StageName,
    fn: () => Promise<T>,
    executionProvider: () => ExecutionProvider = () => 'cpu',
  ): Promise<T> {
    this.checkpoint();
    const now = performance.now();
    const parent = this.stack[this.stack.length - 1];
    if (parent) parent.row.seconds += (now - parent.since) / 1000;
    const row = this.rows.find((r) => r.name === name) ?? this.addRow(name);
    const active: Active = { row, since: now };
    this.stack.push(active);
    this.timer ??= setInterval(() => this.checkpoint(), SAMPLE_MS);
    this.timer.unref?.();
    try {
      return await fn();
    } finally {
      this.checkpoint();
      const end = performance.now();
      this.stack.pop();
      row.seconds += (end - active.since) / 1000;
      row.executionProvider = executionProvider();
      if (parent) parent.since = end;
      if (!this.stack.length) this.stop();
    }
  }

  /** Sets fields of a stage that ran (e.g. calibration passes); ignored for a stage that did not run. */
  annotate(name: StageName, fields: Partial<Pick<StageReport, 'passes'>>): void {
    const row = this.rows.find((r) => r.name === name);
    if (row) Object.assign(row, fields);
  }

  /** The stages that ran, in the order they first started. */
  report(): StageReport[] {
    return this.rows.map((r) => ({ ...r }));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private addRow(name: StageName): StageReport {
    const row: StageReport = { name, seconds: 0, peakRssBytes: 0, executionProvider: 'cpu' };
    this.rows.push(row);
    return row;
  }

  /** Folds the memory seen since the last checkpoint into the running stage's peak. */
  private checkpoint(): void {
    const top = this.stack[this.stack.length - 1];
    const maxRss = maxRssBytes();
    const rose = maxRss > this.lastMaxRss;
    this.lastMaxRss = maxRss;
    if (!top) return;
    top.row.peakRssBytes = Math.max(top.row.peakRssBytes, process.memoryUsage.rss(), rose ? maxRss : 0);
  }
}

/** The process's resident-set high-water mark in bytes (Node reports ru_maxrss in kilobytes on every platform). */
function maxRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}
