// Staging sweep: an upload (or a cross-filesystem copy) cut short by a crash leaves its file or folder in the staging
// folder, and nothing else would ever remove it. Entries nothing has written to for `maxAgeMs` are removed; younger
// ones may belong to uploads in flight on this or another API replica sharing the storage, so they are left alone.
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

const ignoreGone = (e: unknown) => {
  if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  return null;
};

/**
 * Last write time of an entry: for a folder, its newest file at any depth (a file being written updates only its
 * own mtime). Null when it is gone.
 */
export async function lastWriteMs(path: string): Promise<number | null> {
  const s = await lstat(path).catch(ignoreGone);
  if (!s) return null;
  let newest = s.mtimeMs;
  if (s.isDirectory()) {
    const names = (await readdir(path).catch(ignoreGone)) ?? [];
    for (const name of names) {
      const c = await lastWriteMs(join(path, name));
      if (c !== null && c > newest) newest = c;
    }
  }
  return newest;
}

/** Removes the entries of `dir` not written to for `maxAgeMs`; returns their names. A missing `dir` has none. */
export async function sweepStaging(dir: string, maxAgeMs: number, now = Date.now()): Promise<string[]> {
  const names = (await readdir(dir).catch(ignoreGone)) ?? [];
  const removed: string[] = [];
  for (const name of names) {
    const at = await lastWriteMs(join(dir, name));
    if (at === null || now - at < maxAgeMs) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

export interface StagingSweeper {
  /** Resolves when the first sweep (started at once) is done. */
  first: Promise<void>;
  stop(): void;
}

/**
 * Sweeps now and then every `everyMs` (the timer does not keep the process alive). Failures are logged, never thrown:
 * a sweep is housekeeping and must not stop the API from starting.
 */
export function startStagingSweeper(
  dir: string,
  maxAgeMs: number,
  log: { info(o: object, m: string): void; warn(o: object, m: string): void },
  everyMs = Math.min(Math.max(maxAgeMs / 2, 60_000), 15 * 60_000),
): StagingSweeper {
  const sweep = async () => {
    try {
      const removed = await sweepStaging(dir, maxAgeMs);
      if (removed.length) log.info({ removed: removed.length, maxAgeMs }, 'staging sweep removed abandoned uploads');
    } catch (e) {
      log.warn({ err: e }, 'staging sweep failed');
    }
  };
  const first = sweep();
  const timer = setInterval(() => void sweep(), everyMs);
  timer.unref();
  return { first, stop: () => clearInterval(timer) };
}
