// Storage-side faults (issue 8): nothing lost, nothing half-written, no corrupt artifact ever served.
// - the API SIGKILLed mid-upload: its staging file is swept when it starts again (uploads in flight elsewhere kept);
// - the storage disk full (a small tmpfs as the storage root): uploads answer 507, a job's artifact write fails the job
//   clearly, nothing partial is left, and the worker keeps serving;
// - one flipped byte in a stored artifact (or input model): a 500 problem (or a failed job), never the bytes;
// - workers SIGKILLed mid-job: their scratch folders go when the job runs again and when a worker starts;
// - ONNX Runtime's error names the model, not the worker's paths.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { mkdir, open, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../apps/api/app.js';
import { startServer } from '../../apps/api/server.js';
import { loadConfig } from '../../packages/platform/config/config.js';
import { openPlatform, type Platform } from '../../packages/platform/platform.js';
import { startCompressWorker, type RunningWorker } from '../../workers/compress/worker.js';
import { openTestEnv, waitFor, type TestEnv } from '../integration/helpers.js';
import * as C from './corpus.js';
import { getJob, submit, waitState } from './jobs.js';
import { freePort, spawnNode, type NodeProcess } from './servers.js';
import { assertProblem, fillDisk, listFiles, mountTmpfs, multipart } from './support.js';

const TEST_ENGINE = new URL('../integration/fixtures/test-engine.ts', import.meta.url).href;
const quiet = { info() {}, warn() {}, error() {} };
const MiB = 1024 * 1024;
const processes = new Set<NodeProcess>();
after(async () => {
  for (const p of processes) await p.crash();
});

const storageDirOf = (env: TestEnv) => (env.config.storage as { dir: string }).dir;

/** What `onnx-compress serve` / the fault worker need to join the test environment. */
function serviceEnv(env: TestEnv, extra: Record<string, string>): Record<string, string> {
  const c = env.config;
  return {
    ...(process.env as Record<string, string>),
    DATABASE_URL: c.databaseUrl,
    REDIS_URL: c.redisUrl,
    QUEUE_PREFIX: c.queuePrefix,
    STORAGE_DIR: storageDirOf(env),
    WORK_DIR: c.workDir,
    LOG_LEVEL: 'warn',
    STALLED_INTERVAL_MS: String(c.stalledIntervalMs),
    JOB_ATTEMPTS: String(c.jobAttempts),
    RETRY_BACKOFF_MS: String(c.retryBackoffMs),
    ...extra,
  };
}

function spawnTracked(args: string[], env: Record<string, string>): NodeProcess {
  const p = spawnNode(args, env);
  processes.add(p);
  void p.exited.then(() => processes.delete(p));
  return p;
}

async function uploadModel(app: FastifyInstance, bytes: Uint8Array, name = 'm.onnx'): Promise<string> {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/models?name=${name}`,
    headers: { 'content-type': 'application/octet-stream' },
    payload: Buffer.from(bytes),
  });
  assert.equal(res.statusCode, 201, res.body);
  return res.json().id;
}

/** Flips one bit of the byte at `at`, in place (as a failing disk or a stray process would). */
async function flipByte(path: string, at: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] ^= 0x10;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

/** Sets the times of `dir` and everything under it (children first: touching them would renew the folder's). */
async function ageTree(dir: string, when: Date): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) await ageTree(join(dir, e.name), when);
    else await utimes(join(dir, e.name), when, when);
  }
  await utimes(dir, when, when);
}

describe('API SIGKILLed during an upload (the API in its own process)', () => {
  let env: TestEnv;
  before(async () => {
    env = await openTestEnv('stagingsweep');
  });
  after(async () => {
    await env?.cleanup();
  });

  it('after a restart the orphaned staging file is swept (uploads in flight elsewhere are kept), no rows', async () => {
    const port = await freePort();
    const vars = serviceEnv(env, { PORT: String(port), HOST: '127.0.0.1', STAGING_MAX_AGE_MS: String(10 * 60_000) });
    const staging = join(storageDirOf(env), '.staging');

    const api = spawnTracked(['test/reliability/api-process.ts'], vars);
    await waitFor(async () => api.output().includes('listening'), 90_000);
    // A large raw upload (64 MiB declared) that is a few MiB in when the API dies.
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/models?name=big.onnx',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(64 * MiB) },
    });
    req.on('error', () => {}); // the server goes away mid-body
    for (let i = 0; i < 4; i++) req.write(Buffer.alloc(MiB, i + 1));
    const stagedBytes = async () => {
      let n = 0;
      for (const f of await listFiles(staging)) n += (await stat(join(staging, f))).size;
      return n;
    };
    await waitFor(async () => (await stagedBytes()) >= 2 * MiB, 60_000);
    await api.crash();
    req.destroy();
    const orphans = await listFiles(staging);
    assert.equal(orphans.length, 1, `the killed upload left its staging file: ${orphans.join(', ')}`);

    // Time passes (the orphan is older than STAGING_MAX_AGE_MS); another replica's upload was written just now.
    const [orphanDir] = await readdir(staging);
    await ageTree(join(staging, orphanDir), new Date(Date.now() - 2 * 3600_000));
    await mkdir(join(staging, 'other-replica-upload'));
    await writeFile(join(staging, 'other-replica-upload', 'main'), 'bytes in flight');

    // The API starts again (here in this process: the same startServer, configured from the same variables).
    const restarted = await startServer(loadConfig({ ...vars, LOG_LEVEL: 'silent' }));
    try {
      // The first sweep finishes before the API listens.
      assert.deepEqual(await listFiles(staging), ['other-replica-upload/main']);
      assert.equal(await env.platform.db.model.count(), 0, 'no half model row');
      assert.equal(await env.platform.db.dataset.count(), 0, 'no half dataset row');
      // And it takes uploads.
      const res = await fetch(`${restarted.url}/v1/models?name=ok.onnx`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: Buffer.from(C.validModel()),
      });
      assert.equal(res.status, 201, await res.text());
    } finally {
      await restarted.close();
    }
  });
});

describe('storage disk full (the storage root on a 4 MiB tmpfs)', () => {
  let env: TestEnv | undefined;
  let app: FastifyInstance | undefined;
  let worker: RunningWorker | undefined;
  let unmount: (() => Promise<void>) | undefined;
  let skipReason: string | undefined;
  const logs: string[] = [];

  before(async () => {
    const root = join(tmpdir(), `oc-diskfull-${process.pid}-${Date.now()}`);
    const mount = await mountTmpfs(root, 4 * MiB);
    if (!mount.ok) {
      skipReason = mount.reason;
      return;
    }
    unmount = mount.unmount;
    // Storage on the tmpfs; WORK_DIR (uploads hashed, worker scratch) stays on the test's disk, so committing an
    // artifact is a cross-device copy into the full file system.
    env = await openTestEnv('diskfull', { STORAGE_DIR: root, JOB_ATTEMPTS: '2', RETRY_BACKOFF_MS: '100' });
    app = await buildApp({
      deps: env.platform,
      logger: { level: 'error', stream: { write: (line: string) => void logs.push(line) } },
    });
    process.env.TEST_ENGINE_MODE = 'ok:100';
    worker = await startCompressWorker(env.platform, { engineModule: TEST_ENGINE, log: quiet, progressFlushMs: 100 });
  });
  after(async () => {
    await worker?.close();
    await app?.close();
    await env?.cleanup();
    await unmount?.();
  });

  it('an upload that does not fit: 507 problem+json, no partial file, no row (raw and multipart)', async (t) => {
    if (skipReason) return t.skip(`no tmpfs: ${skipReason}`);
    const big = Buffer.alloc(6 * MiB, 9);
    const raw = await app!.inject({
      method: 'POST',
      url: '/v1/models?name=big.onnx',
      headers: { 'content-type': 'application/octet-stream' },
      payload: big,
    });
    assertProblem(raw, 507, 'insufficient-storage');
    const form = multipart([{ name: 'file', filename: 'big.npy', data: big }]);
    const mp = await app!.inject({
      method: 'POST',
      url: '/v1/datasets',
      headers: { 'content-type': form.contentType },
      payload: form.body,
    });
    assertProblem(mp, 507, 'insufficient-storage');
    assert.deepEqual(await listFiles(storageDirOf(env!)), [], 'no partial file');
    assert.equal(await env!.platform.db.model.count(), 0);
    assert.equal(await env!.platform.db.dataset.count(), 0);
    assert.ok(
      logs.some((l) => /storage full/.test(l) && /ENOSPC/.test(l)),
      'logged with its cause',
    );
  });

  it('a job whose artifact write hits ENOSPC fails clearly, leaves nothing, and the worker keeps serving', async (t) => {
    if (skipReason) return t.skip(`no tmpfs: ${skipReason}`);
    const db = env!.platform.db;
    const root = storageDirOf(env!);
    const modelId = await uploadModel(app!, C.validModel());
    const filler = await fillDisk(root, 0);
    const before = await listFiles(root);
    const id = await submit(app!, modelId);
    const failed = await waitState(app!, id, ['succeeded', 'failed']);
    assert.equal(failed.state, 'failed');
    assert.equal(failed.error.code, 'storage-full', JSON.stringify(failed.error));
    assert.match(failed.error.message, /disk space/);
    assert.equal(await db.artifact.count({ where: { jobId: id } }), 0, 'no artifact row');
    assert.equal(await db.jobLayerMetric.count({ where: { jobId: id } }), 0);
    assert.deepEqual(await listFiles(root), before, 'no partial artifact, no copy left in staging');

    await rm(filler); // space is freed: the same worker serves the next job
    const next = await submit(app!, modelId);
    const done = await waitState(app!, next, ['succeeded', 'failed']);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    // The worker commits the row (succeeded) before its processor returns and lets go of the run: it must let go
    // promptly, not necessarily before the row is readable.
    await waitFor(async () => worker!.running.size === 0, 5000, 10);
  });
});

describe('sha256 verified on read', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  let worker: RunningWorker;
  const logs: string[] = [];
  before(async () => {
    env = await openTestEnv('verifyread');
    app = await buildApp({
      deps: env.platform,
      logger: { level: 'error', stream: { write: (line: string) => void logs.push(line) } },
    });
    process.env.TEST_ENGINE_MODE = 'ok:100';
    worker = await startCompressWorker(env.platform, { engineModule: TEST_ENGINE, log: quiet, progressFlushMs: 100 });
  });
  after(async () => {
    await worker?.close();
    await app?.close();
    await env?.cleanup();
  });

  it('one flipped byte in a stored artifact: 500 problem+json (whole file and ranges), logged, never the bytes', async () => {
    const modelId = await uploadModel(app, C.validModel());
    const id = await submit(app, modelId);
    const job = await waitState(app, id, ['succeeded', 'failed']);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    const url = `/v1/jobs/${id}/artifacts/model.onnx`;
    const good = await app.inject({ method: 'GET', url });
    assert.equal(good.statusCode, 200);
    const bytes = good.rawPayload;

    const row = await env.platform.db.artifact.findUniqueOrThrow({
      where: { jobId_name: { jobId: id, name: 'model.onnx' } },
    });
    const file = join(storageDirOf(env), row.storageKey);
    await flipByte(file, Math.floor(bytes.length / 2));
    for (const headers of [{}, { range: 'bytes=0-99' }, { range: `bytes=-10` }]) {
      const res = await app.inject({ method: 'GET', url, headers });
      assertProblem(res, 500, 'artifact-corrupt');
      assert.equal(res.headers['content-disposition'], undefined, 'a problem, not a download');
      assert.ok(!res.rawPayload.includes(bytes.subarray(0, 64)), 'none of the artifact bytes');
    }
    assert.ok(
      logs.some((l) => /does not match its sha256/.test(l) && l.includes(id)),
      'the corruption is logged with the job',
    );

    await flipByte(file, Math.floor(bytes.length / 2)); // repaired (e.g. restored from a backup): served again
    const again = await app.inject({ method: 'GET', url, headers: { range: 'bytes=0-99' } });
    assert.equal(again.statusCode, 206);
    assert.ok(again.rawPayload.equals(bytes.subarray(0, 100)));
  });

  it('a stored input model that no longer matches its sha256 fails the job once (input-corrupt)', async () => {
    const modelId = await uploadModel(app, C.validModel(), 'damaged.onnx');
    const model = await env.platform.db.model.findUniqueOrThrow({ where: { id: modelId } });
    await flipByte(join(storageDirOf(env), model.storageKey), 100);
    const id = await submit(app, modelId);
    const job = await waitState(app, id, ['succeeded', 'failed']);
    assert.equal(job.state, 'failed');
    assert.equal(job.error.code, 'input-corrupt');
    assert.match(job.error.message, /model "damaged\.onnx" does not match the sha256/);
    assert.equal(job.attempts, 1, 'not retried: the stored bytes will not heal');
    assert.deepEqual(job.artifacts, []);
  });
});

describe('scratch folders of SIGKILLed workers', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  before(async () => {
    env = await openTestEnv('scratch', { STALLED_INTERVAL_MS: '1000', JOB_ATTEMPTS: '3', RETRY_BACKOFF_MS: '100' });
    app = await buildApp({ deps: env.platform, logger: false });
  });
  after(async () => {
    await app?.close();
    await env?.cleanup();
  });

  /** Starts the fault worker process on `workDir` and lets it take a new job into its compress stage. */
  async function workerMidJob(workDir: string, modelId: string) {
    const w = spawnTracked(
      ['scripts/fault-helpers/worker.ts'],
      serviceEnv(env, { WORK_DIR: workDir, TEST_ENGINE_MODE: 'ok:8000' }),
    );
    await waitFor(async () => w.output().includes('ready'), 60_000);
    const id = await submit(app, modelId);
    await waitFor(async () => {
      const j = await getJob(app, id);
      return j.state === 'running' && j.stage === 'compress' ? j : null;
    }, 30_000);
    const attempts = await readdir(join(workDir, 'jobs', id));
    assert.equal(attempts.length, 1);
    return { worker: w, id, attempt: attempts[0] };
  }

  async function inProcessWorker(workDir: string): Promise<{ worker: RunningWorker; platform: Platform }> {
    process.env.TEST_ENGINE_MODE = 'ok:300';
    const platform = await openPlatform({ ...env.config, workDir }, { migrate: false });
    const worker = await startCompressWorker(platform, { engineModule: TEST_ENGINE, log: quiet, progressFlushMs: 100 });
    return { worker, platform };
  }

  it('dead attempts are removed when the job runs again and when a worker starts; live ones never', async () => {
    const modelId = await uploadModel(app, C.validModel());
    const workA = join(env.storageDir, 'work-a'); // machine A
    const workB = join(env.storageDir, 'work-b'); // machine B

    // 1. A's worker dies mid-job; a worker on machine B finishes the job. A's folder stays: nobody on A ran since.
    const first = await workerMidJob(workA, modelId);
    await first.worker.crash();
    const b = await inProcessWorker(workB);
    try {
      assert.equal((await waitState(app, first.id, ['succeeded', 'failed'])).state, 'succeeded');
    } finally {
      await b.worker.close();
      await b.platform.close();
    }
    assert.deepEqual(await readdir(join(workA, 'jobs', first.id)), [first.attempt], 'the killed attempt is left');

    // 2. Another worker process on A runs a second job when a new worker starts on A. Also in WORK_DIR: folders of
    // job ids this database does not know (deleted, or another deployment's sharing WORK_DIR), one recent, one old.
    const second = await workerMidJob(workA, modelId);
    const [recent, old] = [randomUUID(), randomUUID()];
    for (const id of [recent, old]) {
      await mkdir(join(workA, 'jobs', id, randomUUID(), 'out'), { recursive: true });
      await writeFile(join(workA, 'jobs', id, 'x'), 'scratch');
    }
    await ageTree(join(workA, 'jobs', old), new Date(Date.now() - 2 * 86_400_000));
    const a = await inProcessWorker(workA);
    try {
      // The start sweep removed the dead attempt of the first job and the day-old unknown folder; it kept the live
      // attempt of the second job (its worker process is alive) and the recent unknown folder.
      assert.deepEqual((await readdir(join(workA, 'jobs'))).sort(), [second.id, recent].sort());
      assert.deepEqual(await readdir(join(workA, 'jobs', second.id)), [second.attempt]);
      await rm(join(workA, 'jobs', recent), { recursive: true });
      // Now the second job's worker dies too: the new worker takes the stalled job over, and the killed attempt's
      // folder goes when the job runs again.
      await second.worker.crash();
      const done = await waitState(app, second.id, ['succeeded', 'failed']);
      assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
      assert.ok(done.attempts >= 2, `attempts ${done.attempts}`);
    } finally {
      await a.worker.close(); // waits for every attempt it runs
      await a.platform.close();
    }
    assert.deepEqual(await listFiles(workA), [], 'no scratch left on machine A');
    assert.deepEqual(await readdir(join(workA, 'jobs')), [], 'no job folder either');
  });
});

describe('worker paths in job errors', () => {
  it("ONNX Runtime's load error names the model, not the worker's scratch or storage paths", async () => {
    const env = await openTestEnv('redact');
    const app = await buildApp({ deps: env.platform, logger: false });
    const worker = await startCompressWorker(env.platform, { log: quiet, progressFlushMs: 100 }); // the real engine
    try {
      const modelId = await uploadModel(app, C.cycleModel(), 'cyclic.onnx');
      const id = await submit(app, modelId);
      const job = await waitState(app, id, ['succeeded', 'failed'], 90_000);
      assert.equal(job.state, 'failed');
      assert.equal(job.error.code, 'onnxruntime-error');
      assert.match(job.error.message, /Load model from cyclic\.onnx failed/, job.error.message);
      assert.match(job.error.message, /acyclic/);
      for (const dir of [env.config.workDir, storageDirOf(env), env.storageDir]) {
        assert.ok(!job.error.message.includes(dir), `no ${dir} in: ${job.error.message}`);
      }
      assert.doesNotMatch(job.error.message, /\/tmp\/|\/jobs\/|attempts/);
    } finally {
      await worker.close();
      await app.close();
      await env.cleanup();
    }
  });
});
