// Job progress: one overall fraction, monotone over the stages, each stage mapped onto its span of [0, 1]
// (calibration runs inside the compress span: its passes are lazy and interleave with the method's layers).
import type { JobProgress } from '../job.js';

/** Stage spans of the overall fraction. */
const SPANS = { load: [0, 0.05], compress: [0.05, 0.8], write: [0.8, 0.85], evaluate: [0.85, 0.99] } as const;

export type ProgressStage = keyof typeof SPANS | 'calibrate' | 'done';

export class Progress {
  private last = 0;
  constructor(private readonly cb?: (p: JobProgress) => void) {}

  emit(stage: ProgressStage, within: number, extra: Partial<JobProgress> = {}): void {
    const span = stage === 'done' ? [1, 1] : SPANS[stage === 'calibrate' ? 'compress' : stage];
    const f = Math.max(this.last, Math.min(1, span[0] + (span[1] - span[0]) * Math.max(0, Math.min(1, within))));
    this.last = f;
    this.cb?.({ stage, fraction: f, ...extra });
  }
}
