// Shared by the reliability tests: problem+json checks, a multipart encoder, and a "what is left behind" snapshot
// (row counts in Postgres + every file under the storage and work folders) to prove a rejected request or a failed
// job leaves no partial rows and no stray files.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, open, readdir, rm, statfs } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Db } from '../../packages/platform/db/client.js';

export interface ProblemLike {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
}

/** Asserts an RFC 9457 problem with this status (and code, when given); returns the parsed body. */
export function assertProblem(
  res: ProblemLike,
  status: number,
  code?: string,
  detail?: RegExp,
): { code: string; detail?: string; status: number; errors?: { path: string; message: string }[] } {
  assert.equal(res.statusCode, status, `expected ${status}, got ${res.statusCode}: ${res.body.slice(0, 500)}`);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/, res.body.slice(0, 200));
  const p = JSON.parse(res.body);
  assert.equal(p.status, status);
  assert.ok(typeof p.title === 'string' && p.title.length > 0);
  assert.ok(typeof p.type === 'string' && p.type.length > 0);
  if (code) assert.equal(p.code, code, res.body);
  if (detail) assert.match(String(p.detail ?? ''), detail, res.body);
  // 4xx details are for the client; nothing internal (stack traces, file system paths of the server) leaks.
  assert.doesNotMatch(res.body, /\bat .+\.(ts|js):\d+|node_modules|\/tmp\//, 'no stack or server path in the problem');
  return p;
}

export interface Part {
  name: string;
  filename?: string;
  type?: string;
  data: Uint8Array | string;
}

/** multipart/form-data body + content type. */
export function multipart(parts: Part[]): { body: Buffer; contentType: string } {
  const boundary = `----oc-reliability-${Math.random().toString(16).slice(2)}`;
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) head += `; filename="${p.filename}"`;
    head += '\r\n';
    if (p.filename !== undefined) head += `Content-Type: ${p.type ?? 'application/octet-stream'}\r\n`;
    chunks.push(Buffer.from(head + '\r\n'), Buffer.from(p.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** Every regular file under `dir` (relative paths, sorted); missing folder = none. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(relative(dir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

export interface Leftovers {
  rows: Record<string, number>;
  files: string[];
}

/** Row counts of every table a request or job writes, and every file under the given folders. */
export async function leftovers(db: Db, dirs: string[]): Promise<Leftovers> {
  const rows = {
    models: await db.model.count(),
    datasets: await db.dataset.count(),
    jobs: await db.job.count(),
    artifacts: await db.artifact.count(),
    layerMetrics: await db.jobLayerMetric.count(),
  };
  const files: string[] = [];
  for (const d of dirs) for (const f of await listFiles(d)) files.push(join(d, f));
  return { rows, files: files.sort() };
}

/**
 * A small tmpfs mounted at `dir` (created if missing): a file system that really fills up (ENOSPC). Needs root and a
 * kernel that allows it; otherwise returns the reason, for the test to skip with. `unmount` also removes `dir`.
 */
export async function mountTmpfs(
  dir: string,
  bytes: number,
): Promise<{ ok: true; unmount(): Promise<void> } | { ok: false; reason: string }> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return { ok: false, reason: 'needs root on Linux' };
  await mkdir(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) return { ok: false, reason: `mount -t tmpfs failed: ${(r.stderr || r.error?.message) ?? ''}` };
  return {
    ok: true,
    async unmount() {
      spawnSync('umount', ['-l', dir]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Fills the file system holding `dir` with one file, leaving about `leaveBytes` free; returns the file's path. */
export async function fillDisk(dir: string, leaveBytes: number): Promise<string> {
  const path = join(dir, `filler-${process.pid}`);
  const s = await statfs(dir);
  const fh = await open(path, 'w');
  try {
    let left = s.bavail * s.bsize - leaveBytes;
    const chunk = Buffer.alloc(1 << 16);
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      try {
        await fh.write(chunk, 0, n);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw e;
      }
      left -= n;
    }
  } finally {
    await fh.close();
  }
  return path;
}
