// The one owner of a job's ONNX Runtime sessions. Every session the runner opens goes through here, so that the
// execution-provider choice and its fallbacks are handled in one place: providers are tried in the job's order,
// starting from the one that last worked (a provider that failed once is not tried again), each fallback becomes
// one warning, and the provider that ran is what the report records. Sessions still open when the job ends are
// released by releaseAll; stages release theirs as soon as they are done, so the job holds one copy of a model's
// weights in ONNX Runtime at a time.
import { tmpdir } from 'node:os';
import type * as ort from 'onnxruntime-node';
import type { LoadedModel } from '../onnx/model.js';
import { openCaptureSession, type CaptureSessionOptions } from '../runtime/calibration.js';
import { checkLoadable } from '../runtime/load-check.js';
import type { CaptureSession, StatsRequest } from '../runtime/stats.js';
import { openModelFile, withoutRuns, type LoadedSessionOptions } from '../runtime/open-model.js';
import { openSession, type ExecutionProvider, type OpenedSession } from '../runtime/session.js';

export class SessionOwner {
  private readonly providers: ExecutionProvider[];
  private readonly live = new Set<ort.InferenceSession>();
  private readonly warned = new Set<string>();
  /** The provider a session opened on; later sessions start there. */
  private chosen?: ExecutionProvider;
  /** The provider the last session ran on (before any session: the last of the list, the one always present). */
  executionProvider: ExecutionProvider;

  constructor(
    providers: readonly ExecutionProvider[] | undefined,
    private readonly warnings: string[],
    /** Where a model file ONNX Runtime cannot map is rewritten with aligned external data (runtime/open-model.ts). */
    private readonly scratchDir: string = tmpdir(),
  ) {
    this.providers = providers?.length ? [...providers] : ['cpu'];
    this.executionProvider = this.providers[this.providers.length - 1];
  }

  /** Providers still worth trying: from the one that last worked on, or the whole list before any session. */
  get candidates(): ExecutionProvider[] {
    return this.chosen ? this.providers.slice(this.providers.indexOf(this.chosen)) : [...this.providers];
  }

  /** Opens a model file (or bytes) and keeps the session until release/releaseAll. */
  async open(
    model: string | Uint8Array,
    opts: Omit<LoadedSessionOptions, 'executionProviders'> = {},
  ): Promise<ort.InferenceSession> {
    return this.keep(await this.openUntracked(model, opts));
  }

  /**
   * Opens a session the caller releases itself (e.g. a timing loop), with the same provider choice (unless the
   * caller pins providers) and warnings. Shaped like runtime/session.ts's openSession, so it can be handed to code
   * that opens its own sessions.
   */
  openUntracked = async (model: string | Uint8Array, opts: LoadedSessionOptions = {}): Promise<OpenedSession> => {
    const o = { ...opts, executionProviders: opts.executionProviders ?? this.candidates };
    // Model files go through openModelFile: ONNX Runtime then reads each weight from the file instead of parsing the
    // whole file into one protobuf first (for a large inline model, over half its size again at peak).
    return this.record(
      await (typeof model === 'string' ? openModelFile(model, this.scratchDir, o) : openSession(model, withoutRuns(o))),
    );
  };

  /**
   * A session on the model as it stands with the statistics of `reqs` reduced in the graph (calibration). The
   * StatsCollector releases it when its pass ends (one per pass), so it is not tracked here.
   */
  openCapture = async (
    model: LoadedModel,
    reqs: StatsRequest[],
    dir: string,
    opts: CaptureSessionOptions = {},
  ): Promise<CaptureSession> => {
    return this.record(await openCaptureSession(model, reqs, dir, this.candidates, opts));
  };

  /** "Can ONNX Runtime load this model?" on a weight-free skeleton (runtime/load-check.ts); holds no session. */
  async checkLoadable(model: LoadedModel, dir: string): Promise<void> {
    this.record(await checkLoadable(model, dir, this.candidates));
  }

  async release(session: ort.InferenceSession | undefined): Promise<void> {
    if (!session || !this.live.delete(session)) return;
    await session.release().catch(() => {});
  }

  async releaseAll(): Promise<void> {
    for (const s of [...this.live]) await this.release(s);
  }

  private keep(opened: OpenedSession): ort.InferenceSession {
    this.record(opened);
    this.live.add(opened.session);
    return opened.session;
  }

  /** The one place a fallback becomes a warning (once per distinct reason) and the provider used is recorded. */
  private record<T extends Omit<OpenedSession, 'session'>>(opened: T): T {
    for (const f of opened.fallbacks) {
      if (this.warned.has(f)) continue;
      this.warned.add(f);
      this.warnings.push(`execution provider fallback: ${f}`);
    }
    this.executionProvider = opened.executionProvider;
    this.chosen = opened.executionProvider;
    return opened;
  }
}
