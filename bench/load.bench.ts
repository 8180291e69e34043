// Load: one API process (`onnx-compress serve`) + two worker processes on this machine, real Postgres and Redis.
//   1. UPLOADS concurrent model uploads of UPLOAD_MB each (valid ONNX models, one large initializer);
//   2. JOBS jobs queued at once; GET /v1/jobs/:id is sampled every 20 ms while the workers are busy;
//   3. prints: upload throughput and failures, jobs succeeded, GET p50/p99/max while busy (target p99 < 50 ms),
//      the API's RSS at start / peak / end (memory flat = end close to start).
// Defaults are the figures (50 × 50 MB, 200 jobs); set UPLOADS, UPLOAD_MB, JOBS to scale down on a shared box.
// UPLOAD_KIND=npz uploads calibration datasets (.npz, one float32 array) instead of models: their inspection still
// reads and decodes the whole file, as model inspection did before weights were read lazily.
// Workers run the real engine (ENGINE=real, default) or the deterministic stand-in (ENGINE=stand-in, 1 s per job).
//   npx tsx bench/load.bench.ts            UPLOADS=10 UPLOAD_MB=10 JOBS=40 npx tsx bench/load.bench.ts
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from '../packages/engine/onnx/gen/onnx_pb.js';
import { encodeNpz } from '../packages/engine/data/npz.js';
import { createApiKey } from '../packages/platform/auth/keys.js';
import { createDb } from '../packages/platform/db/client.js';
import { GraphBuilder } from '../packages/engine/onnx/builder.js';
import { floats, mlpProto } from '../test/reliability/corpus.js';
import { databaseUrl, deleteRedisPrefix, dropDatabase, uniqueName } from '../test/integration/helpers.js';
import { freePort, waitForPort } from '../test/reliability/servers.js';

const UPLOADS = Number(process.env.UPLOADS ?? 50);
const UPLOAD_MB = Number(process.env.UPLOAD_MB ?? 50);
const JOBS = Number(process.env.JOBS ?? 200);
const ENGINE = process.env.ENGINE ?? 'real';
const UPLOAD_KIND = process.env.UPLOAD_KIND ?? 'model';
const ROOT = new URL('..', import.meta.url).pathname;

function bigModel(mb: number): Uint8Array {
  // x[1,K] → MatMul W[K,K]: K chosen so that W is about `mb` MB.
  const k = Math.max(64, Math.floor(Math.sqrt((mb * 2 ** 20) / 4) / 4) * 4);
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, k]);
  b.output(
    b.node('MatMul', [x, b.initializer('W', 'float32', [k, k], floats(k * k, 5))], {}, { output: 'y' }),
    'float32',
    [1, k],
  );
  return toBinary(ModelProtoSchema, b.build().proto);
}

function bigNpz(mb: number): Uint8Array {
  const n = Math.floor((mb * 2 ** 20) / 4 / 64) * 64;
  return encodeNpz({ x: { dtype: 'float32', dims: [n / 64, 64], data: floats(n, 7) } });
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const rssMb = (pid: number) => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN; // the process is gone
  }
};

const children: ChildProcess[] = [];
function start(args: string[], env: Record<string, string>): ChildProcess {
  const p = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(p);
  return p;
}

const name = uniqueName('load');
const dir = await mkdtemp(join(tmpdir(), `${name}-`));
const port = await freePort();
const env = {
  DATABASE_URL: databaseUrl(name),
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  QUEUE_PREFIX: name,
  STORAGE_DIR: join(dir, 'storage'),
  WORK_DIR: join(dir, 'work'),
  LOG_LEVEL: 'warn',
  PORT: String(port),
  HOST: '127.0.0.1',
  MAX_UPLOAD_BYTES: String((UPLOAD_MB + 8) * 2 ** 20),
  TEST_ENGINE_MODE: 'ok:1000',
  RATE_LIMIT_PER_KEY_PER_MINUTE: '0',
};
const base = `http://127.0.0.1:${port}`;
try {
  const api = start(['bin/onnx-compress.mjs', 'serve'], env);
  await waitForPort(port, 120_000);
  const db = createDb(env.DATABASE_URL, 2);
  const auth = { authorization: `Bearer ${(await createApiKey(db, { tenant: 'load' })).key}` };
  await db.$disconnect();
  const workerArgs =
    ENGINE === 'real' ? ['bin/onnx-compress.mjs', 'worker'] : ['--import', 'tsx', 'scripts/fault-helpers/worker.ts'];
  start(workerArgs, env);
  start(workerArgs, env);
  const rss: number[] = [rssMb(api.pid!)];
  const rssTimer = setInterval(() => rss.push(rssMb(api.pid!)), 200);

  // 1. Uploads.
  const payload = UPLOAD_KIND === 'npz' ? bigNpz(UPLOAD_MB) : bigModel(UPLOAD_MB);
  const target = (i: number) =>
    UPLOAD_KIND === 'npz' ? `${base}/v1/datasets?name=calib-${i}.npz` : `${base}/v1/models?name=big-${i}.onnx`;
  const t0 = performance.now();
  const ups = await Promise.all(
    Array.from({ length: UPLOADS }, (_, i) =>
      fetch(target(i), {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/octet-stream' },
        body: payload,
      }).then(
        async (r) => ({ status: r.status, body: await r.text() }),
        (e: Error) => ({ status: 0, body: `${e.message}: ${(e.cause as Error | undefined)?.message ?? ''}` }),
      ),
    ),
  );
  const upSeconds = (performance.now() - t0) / 1000;
  const rssPeakUploads = Math.max(...rss, rssMb(api.pid!));
  const upOk = ups.filter((u) => u.status === 201).length;
  const upMb = (payload.length * UPLOADS) / 2 ** 20;
  console.log(
    `uploads (${UPLOAD_KIND}): ${upOk}/${UPLOADS} × ${(payload.length / 2 ** 20).toFixed(1)} MB in ${upSeconds.toFixed(1)} s ` +
      `(${(upMb / upSeconds).toFixed(0)} MB/s aggregate)`,
  );
  for (const u of ups.filter((x) => x.status !== 201).slice(0, 3))
    console.log(`  failed: ${u.status} ${u.body.slice(0, 200)}`);

  // 2. Jobs on a small model (the upload test covered size; here the workers must stay busy).
  const small = await fetch(`${base}/v1/models?name=small.onnx`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/octet-stream' },
    body: toBinary(ModelProtoSchema, mlpProto()),
  }).then((r) => r.json() as Promise<{ id: string }>);
  const ids = await Promise.all(
    Array.from({ length: JOBS }, () =>
      fetch(`${base}/v1/jobs`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ modelId: small.id, recipe: { method: 'sparsity', pattern: '2:4' } }),
      }).then(async (r) => ((await r.json()) as { id: string }).id),
    ),
  );
  const lat: number[] = [];
  const t1 = performance.now();
  let done = 0;
  let failed = 0;
  for (;;) {
    const s = performance.now();
    const r = await fetch(`${base}/v1/jobs/${ids[lat.length % ids.length]}`, { headers: auth });
    await r.arrayBuffer();
    lat.push(performance.now() - s);
    if (lat.length % 50 === 0) {
      const page = await fetch(`${base}/v1/jobs?limit=200&state=succeeded`, { headers: auth }).then(
        (x) => x.json() as Promise<{ items: unknown[] }>,
      );
      const bad = await fetch(`${base}/v1/jobs?limit=200&state=failed`, { headers: auth }).then(
        (x) => x.json() as Promise<{ items: unknown[] }>,
      );
      done = page.items.length;
      failed = bad.items.length;
      if (done + failed >= JOBS) break;
      if (performance.now() - t1 > 30 * 60_000) break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const jobSeconds = (performance.now() - t1) / 1000;
  clearInterval(rssTimer);
  rss.push(rssMb(api.pid!));
  console.log(
    `jobs: ${done}/${JOBS} succeeded, ${failed} failed, in ${jobSeconds.toFixed(1)} s with 2 workers (${ENGINE} engine)`,
  );
  console.log(
    `GET /v1/jobs/:id while busy: n=${lat.length} p50=${pct(lat, 50).toFixed(1)} ms ` +
      `p99=${pct(lat, 99).toFixed(1)} ms max=${Math.max(...lat).toFixed(1)} ms (target p99 < 50 ms)`,
  );
  console.log(
    `API RSS: start ${rss[0].toFixed(0)} MB, peak during the uploads ${rssPeakUploads.toFixed(0)} MB, ` +
      `peak ${Math.max(...rss).toFixed(0)} MB, end ${rss[rss.length - 1].toFixed(0)} MB`,
  );
} finally {
  for (const c of children) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 2000));
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await dropDatabase(databaseUrl(name)).catch(() => {});
  await deleteRedisPrefix(name).catch(() => {});
  await rm(dir, { recursive: true, force: true });
}
