// The worker's scratch space, WORK_DIR/jobs/<job id>/<attempt id>: inputs, engine temp files and outputs of one
// attempt. An attempt removes its own folder when it ends; a worker killed mid-job cannot, so older attempts' folders
// are removed when the job runs again, and at worker start every folder of a job no longer running is swept. Also:
// worker paths never leave the worker in a job's error message.
import { readdir, rm, rmdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Db } from '../../packages/platform/db/client.js';
import { lastWriteMs } from '../../packages/platform/storage/sweep.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const jobScratchDir = (workDir: string, jobId: string) => join(workDir, 'jobs', jobId);

const entries = async (dir: string) =>
  readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });

/** Removes the job's folder once no attempt folder is left in it (another attempt may still be using it). */
async function removeIfEmpty(dir: string): Promise<void> {
  await rmdir(dir).catch(() => {});
}

/** Removes the folders of the job's attempts other than `keep` (attempts of a worker that was killed). */
export async function removeOtherAttempts(workDir: string, jobId: string, keep: string): Promise<string[]> {
  const dir = jobScratchDir(workDir, jobId);
  const stale = (await entries(dir)).filter((a) => a !== keep);
  for (const a of stale) await rm(join(dir, a), { recursive: true, force: true });
  return stale;
}

/** Removes one attempt's folder, and the job's folder if that was the last one. */
export async function removeAttempt(workDir: string, jobId: string, attemptId: string): Promise<void> {
  await rm(join(jobScratchDir(workDir, jobId), attemptId), { recursive: true, force: true });
  await removeIfEmpty(jobScratchDir(workDir, jobId));
}

/** Removes every attempt folder of a job that will not run here (already finished, cancelled or deleted). */
export async function removeJobScratch(workDir: string, jobId: string): Promise<void> {
  await rm(jobScratchDir(workDir, jobId), { recursive: true, force: true });
}

/** Scratch of a job this database does not know is only removed once nothing in it was written for this long. */
const UNKNOWN_JOB_MAX_AGE_MS = 24 * 60 * 60 * 1000;

/**
 * At worker start: removes the attempt folders of jobs that are not running (finished, or queued for a retry).
 * Folders of running jobs are kept (another worker sharing WORK_DIR may be running them; if their worker died, the
 * next attempt removes them), and so is any folder created after the sweep began (an attempt that started
 * meanwhile). A job id the database does not know (deleted, or another deployment's sharing the default WORK_DIR) is
 * removed only when nothing in its folder was written for a day. Returns the job ids whose folders were swept.
 */
export async function sweepJobScratch(db: Db, workDir: string, now = Date.now()): Promise<string[]> {
  const root = join(workDir, 'jobs');
  const ids = (await entries(root)).filter((n) => UUID.test(n));
  if (!ids.length) return [];
  const rows = await db.job.findMany({ where: { id: { in: ids } }, select: { id: true, state: true } });
  const state = new Map(rows.map((j) => [j.id, j.state]));
  const swept: string[] = [];
  for (const id of ids) {
    const s = state.get(id);
    if (s === 'running') continue;
    if (s === undefined) {
      const at = await lastWriteMs(join(root, id));
      if (at === null || now - at < UNKNOWN_JOB_MAX_AGE_MS) continue;
    }
    for (const a of await entries(join(root, id))) {
      const st = await stat(join(root, id, a)).catch(() => null);
      if (st && st.birthtimeMs < now && st.mtimeMs < now) {
        await rm(join(root, id, a), { recursive: true, force: true });
      }
    }
    await removeIfEmpty(join(root, id));
    swept.push(id);
  }
  return swept;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Rewrites a message so that no worker path is left in it: each input's local path becomes its owner's name (the
 * model's or dataset's name); any other `.onnx` file under one of `roots` (scratch, storage) is one the engine
 * derived from the job's model (e.g. the skeleton ONNX Runtime load-checks), so it becomes `modelName` too; any
 * other path its last component.
 */
export function redactPaths(message: string, names: Map<string, string>, roots: string[], modelName?: string): string {
  let out = message;
  // Longest first, so a path is never half-replaced by a shorter one that prefixes it.
  for (const [path, name] of [...names].sort((a, b) => b[0].length - a[0].length)) out = out.split(path).join(name);
  for (const root of roots.map((r) => r.replace(/\/+$/, '')).sort((a, b) => b.length - a.length)) {
    const re = new RegExp(`${escape(root)}(?:/[^\\s'"\`()\\[\\]{},;]*)?`, 'g');
    out = out.replace(re, (match) => {
      const path = match.replace(/[.:]+$/, ''); // sentence punctuation after the path stays
      const last = path === root ? '' : basename(path);
      const name = !last ? '<worker path>' : modelName && last.endsWith('.onnx') ? modelName : last;
      return name + match.slice(path.length);
    });
  }
  return out;
}
