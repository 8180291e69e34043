// What the compress processor and its stages (attempt.ts, commit.ts) need, passed in one object.
import type { Config } from '../../packages/platform/config/config.js';
import type { Db } from '../../packages/platform/db/client.js';
import type { JobLifecycle } from '../../packages/platform/jobs/lifecycle.js';
import type { Storage } from '../../packages/platform/storage/storage.js';

export interface ProcessorDeps {
  config: Config;
  db: Db;
  storage: Storage;
  /** The one writer of job states. */
  jobs: JobLifecycle;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
  /** Module whose `runCompression(args, ctx)` runs in the thread. @defaultValue ./engine.ts */
  engineModule: string;
  /** Abort controllers of the jobs this process runs, by job id (the cancel subscriber aborts through it). */
  running: Map<string, AbortController>;
  /** How often progress is written to Postgres. @defaultValue 500 */
  progressFlushMs?: number;
}
