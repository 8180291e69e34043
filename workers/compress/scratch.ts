// The worker's scratch space, WORK_DIR/jobs/<job id>/<attempt id>: inputs, engine temp files and outputs of one
// attempt, with an owner file naming the machine and process running it. An attempt removes its own folder when it
// ends; a worker killed mid-job cannot, so dead attempts' folders are removed when the job runs again and by a sweep
// at worker start (and every few minutes). A folder is only removed when its owner is known to be gone: a process
// on this machine that no longer exists, or, for an owner this machine cannot check (another container sharing the
// volume), a job that is no longer running. A live attempt's folder is never touched: BullMQ can hand the job of a
// stalled-but-alive worker to another, and both attempts then run to the commit. Also: worker paths never leave the
// worker in a job's error message.
import { mkdir, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import type { Db } from '../../packages/platform/db/client.js';
import { lastWriteMs } from '../../packages/platform/storage/sweep.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const OWNER_FILE = 'owner.json';
/** Scratch of a job this database does not know is only removed once nothing in it was written for this long. */
const UNKNOWN_JOB_MAX_AGE_MS = 24 * 60 * 60 * 1000;

export const jobScratchDir = (workDir: string, jobId: string) => join(workDir, 'jobs', jobId);

const entries = async (dir: string) =>
  readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return [] as string[];
    throw e;
  });

/** Removes the job's folder once no attempt folder is left in it (another attempt may still be using it). */
async function removeIfEmpty(dir: string): Promise<void> {
  await rmdir(dir).catch(() => {});
}

/** Creates an attempt's folder with its owner file (this machine, this process). */
export async function claimAttemptDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, OWNER_FILE), JSON.stringify({ host: hostname(), pid: process.pid }));
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** 'dead': its process on this machine is gone; 'alive'; 'unknown': another machine's, or no owner file. */
async function attemptOwner(dir: string): Promise<'alive' | 'dead' | 'unknown'> {
  try {
    const o = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as { host?: unknown; pid?: unknown };
    if (o.host !== hostname() || typeof o.pid !== 'number') return 'unknown';
    return processExists(o.pid) ? 'alive' : 'dead';
  } catch {
    return 'unknown';
  }
}

/**
 * Removes the job's attempt folders (all but `keep`) whose owner is gone: dead on this machine, or unknown when the
 * job is not running (`jobRunning: false`). Folders created or written after `before` are kept (an attempt that
 * started meanwhile). Returns the attempt ids removed.
 */
export async function removeDeadAttempts(
  workDir: string,
  jobId: string,
  opts: { keep?: string; jobRunning: boolean; before?: number },
): Promise<string[]> {
  const dir = jobScratchDir(workDir, jobId);
  const removed: string[] = [];
  for (const a of await entries(dir)) {
    if (a === opts.keep) continue;
    const st = await stat(join(dir, a)).catch(() => null);
    if (!st || (opts.before !== undefined && (st.birthtimeMs >= opts.before || st.mtimeMs >= opts.before))) continue;
    const owner = await attemptOwner(join(dir, a));
    if (owner === 'dead' || (owner === 'unknown' && !opts.jobRunning)) {
      await rm(join(dir, a), { recursive: true, force: true });
      removed.push(a);
    }
  }
  await removeIfEmpty(dir);
  return removed;
}

/** Removes one attempt's folder, and the job's folder if that was the last one. */
export async function removeAttempt(workDir: string, jobId: string, attemptId: string): Promise<void> {
  await rm(join(jobScratchDir(workDir, jobId), attemptId), { recursive: true, force: true });
  await removeIfEmpty(jobScratchDir(workDir, jobId));
}

/**
 * Worker start (and every few minutes): removes dead attempts' folders of every job in WORK_DIR. A job id the
 * database does not know (deleted, or another deployment's sharing the default WORK_DIR) counts as running until
 * nothing in its folder was written for a day. Returns the job ids of which something was removed.
 */
export async function sweepJobScratch(db: Db, workDir: string, now = Date.now()): Promise<string[]> {
  const root = join(workDir, 'jobs');
  const ids = (await entries(root)).filter((n) => UUID.test(n));
  if (!ids.length) return [];
  const rows = await db.job.findMany({ where: { id: { in: ids } }, select: { id: true, state: true } });
  const state = new Map(rows.map((j) => [j.id, j.state]));
  const swept: string[] = [];
  for (const id of ids) {
    let jobRunning = state.get(id) === 'running';
    if (!state.has(id)) {
      const at = await lastWriteMs(join(root, id));
      jobRunning = at !== null && now - at < UNKNOWN_JOB_MAX_AGE_MS;
    }
    if ((await removeDeadAttempts(workDir, id, { jobRunning, before: now })).length) swept.push(id);
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
