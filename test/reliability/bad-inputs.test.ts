// The bad-input corpus against the real service (Fastify app + Postgres + Redis + a compress worker running the real
// engine): one test per class. Each ends in a 4xx problem+json from the API or in a failed job with a clear error
// (never retried, never "internal"), and afterwards no partial rows in Postgres and no stray files in the storage or
// work folders. The corpus is generated in code (corpus.ts); CLASSES at the bottom counts what was tried.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../apps/api/app.js';
import { inspectModel } from '../../apps/api/services/inspect-client.js';
import { startCompressWorker, type RunningWorker } from '../../workers/compress/worker.js';
import { openTestEnv, waitFor, type TestEnv } from '../integration/helpers.js';
import * as C from './corpus.js';
import { assertProblem, leftovers, listFiles, multipart, type Leftovers } from './support.js';

const LIMIT = 2 * 1024 * 1024;
let env: TestEnv;
let app: FastifyInstance;
let url: string;
let worker: RunningWorker;
let baseline: Leftovers;
const tried = new Set<string>();
const quiet = { info() {}, warn() {}, error() {} };

const snapshot = () => leftovers(env.platform.db, [env.config.workDir, (env.config.storage as { dir: string }).dir]);

before(async () => {
  env = await openTestEnv('badinput', { MAX_UPLOAD_BYTES: String(LIMIT), JOB_ATTEMPTS: '3', RETRY_BACKOFF_MS: '50' });
  app = await buildApp({ deps: env.platform, logger: false });
  url = await app.listen({ port: 0, host: '127.0.0.1' });
  worker = await startCompressWorker(env.platform, { log: quiet, progressFlushMs: 100 });
  baseline = await snapshot();
  assert.deepEqual(baseline.files, []);
});

after(async () => {
  await worker?.close();
  await app?.close();
  await env?.cleanup();
  console.log(`# bad-input classes tried: ${tried.size}`);
});

/** After every test: nothing the test created is left (each test deletes what it made on purpose). */
afterEach(async () => {
  assert.deepEqual(await snapshot(), baseline);
});

const raw = (path: string, bytes: Uint8Array | string, contentType = 'application/octet-stream') =>
  app.inject({ method: 'POST', url: path, headers: { 'content-type': contentType }, payload: Buffer.from(bytes) });

const postModel = (bytes: Uint8Array, name = 'm.onnx') => raw(`/v1/models?name=${name}`, bytes);

async function uploadOk(path: string, bytes: Uint8Array): Promise<string> {
  const res = await raw(path, bytes);
  assert.equal(res.statusCode, 201, res.body);
  return res.json().id;
}

async function del(path: string) {
  const res = await app.inject({ method: 'DELETE', url: path });
  assert.equal(res.statusCode, 204, `${path}: ${res.body}`);
}

/** A rejected request leaves exactly what was there before. */
async function rejected(
  cls: string,
  send: () => Promise<{ statusCode: number; headers: Record<string, unknown>; body: string }>,
  status: number,
  code: string,
  detail?: RegExp,
) {
  tried.add(cls);
  const before = await snapshot();
  const res = await send();
  assertProblem(res, status, code, detail);
  assert.deepEqual(await snapshot(), before, `${cls}: rows or files left behind`);
}

const waitJob = (id: string) =>
  waitFor(async () => {
    const j = (await app.inject({ method: 'GET', url: `/v1/jobs/${id}` })).json();
    return ['succeeded', 'failed', 'cancelled'].includes(j.state) ? j : null;
  }, 60_000);

/** Uploads `model` (+ ingredients), runs `recipe`, returns the finished job; the caller deletes job and models. */
async function runJob(
  recipe: object,
  model: Uint8Array,
  more: { ingredients?: Uint8Array[]; calibration?: Uint8Array } = {},
) {
  const modelId = await uploadOk('/v1/models?name=m.onnx', model);
  const ingredientModelIds: string[] = [];
  for (const b of more.ingredients ?? []) ingredientModelIds.push(await uploadOk('/v1/models?name=i.onnx', b));
  const calibrationDatasetId = more.calibration
    ? await uploadOk('/v1/datasets?name=c.npz', more.calibration)
    : undefined;
  const res = await app.inject({
    method: 'POST',
    url: '/v1/jobs',
    payload: { modelId, recipe, ...(ingredientModelIds.length ? { ingredientModelIds } : {}), calibrationDatasetId },
  });
  assert.equal(res.statusCode, 202, res.body);
  const job = await waitJob(res.json().id);
  const cleanup = async () => {
    await del(`/v1/jobs/${job.id}`);
    for (const id of [modelId, ...ingredientModelIds]) await del(`/v1/models/${id}`);
    if (calibrationDatasetId) await del(`/v1/datasets/${calibrationDatasetId}`);
  };
  return { job, cleanup };
}

/** A job that must fail once with a clear input error: no retry, no artifacts, no metric rows, no work files. */
async function failedJob(cls: string, recipe: object, model: Uint8Array, code: string, message: RegExp, more = {}) {
  tried.add(cls);
  const { job, cleanup } = await runJob(recipe, model, more);
  try {
    assert.equal(job.state, 'failed', `${cls}: ${JSON.stringify(job)}`);
    assert.equal(job.error.code, code, JSON.stringify(job.error));
    assert.match(job.error.message, message);
    assert.equal(job.attempts, 1, 'bad input is never retried');
    assert.deepEqual(job.artifacts, []);
    assert.equal(await env.platform.db.artifact.count({ where: { jobId: job.id } }), 0);
    assert.equal(await env.platform.db.jobLayerMetric.count({ where: { jobId: job.id } }), 0);
    const storageDir = (env.config.storage as { dir: string }).dir;
    assert.deepEqual(
      (await listFiles(storageDir)).filter((f) => f.includes(`/jobs/${job.id}/`)),
      [],
    );
    assert.deepEqual(await listFiles(join(env.config.workDir, 'jobs', job.id)), []);
  } finally {
    await cleanup();
  }
}

describe('model uploads the API refuses (422/400, nothing stored)', () => {
  it('empty file', () => rejected('empty file', () => postModel(new Uint8Array(0)), 400, 'validation-failed', /empty/));

  it('random bytes', () =>
    rejected(
      'random bytes',
      () => postModel(C.pseudoRandomBytes(4096)),
      422,
      'invalid-model',
      /not-protobuf|truncated/,
    ));

  it('truncated protobuf', () => {
    const good = C.validModel();
    return rejected(
      'truncated protobuf',
      () => postModel(good.subarray(0, Math.floor(good.length * 0.6))),
      422,
      'invalid-model',
      /truncated/,
    );
  });

  it('valid protobuf that is not a model (a TensorProto)', () =>
    rejected(
      'protobuf, not a model',
      () => postModel(C.tensorProtoBytes()),
      422,
      'invalid-model',
      /not-a-model|not-protobuf|truncated/,
    ));

  it('dims bomb: a tensor claiming 10^12 elements', async () => {
    const rss = process.memoryUsage().rss;
    await rejected('dims bomb', () => postModel(C.dimsBombModel()), 422, 'invalid-model', /dims-too-large/);
    assert.ok(process.memoryUsage().rss - rss < 256 * 2 ** 20, 'no allocation sized by the claimed dims');
  });

  it('raw_data length ≠ shape', () =>
    rejected(
      'raw_data ≠ shape',
      () => postModel(C.rawDataMismatchModel()),
      422,
      'invalid-model',
      /raw-data-size-mismatch/,
    ));

  const withSide = (model: Uint8Array, side: { filename: string; data: Uint8Array }[]) => {
    const m = multipart([
      { name: 'file', filename: 'model.onnx', data: model },
      ...side.map((s) => ({ name: 'externalData', filename: s.filename, data: s.data })),
    ]);
    return () =>
      app.inject({ method: 'POST', url: '/v1/models', headers: { 'content-type': m.contentType }, payload: m.body });
  };

  it('external data location with ".."', () => {
    const { model, data } = C.externalModel('../../w.bin');
    return rejected(
      'external "..")',
      withSide(model, [{ filename: 'w.bin', data }]),
      422,
      'invalid-model',
      /external-path-traversal/,
    );
  });

  it('external data location that is an absolute path', () => {
    const { model, data } = C.externalModel('/etc/passwd');
    return rejected(
      'external absolute path',
      withSide(model, [{ filename: 'w.bin', data }]),
      422,
      'invalid-model',
      /external-absolute-path/,
    );
  });

  it('external data offset past the end of the side file', () => {
    const { model, data } = C.externalModel('w.bin', { offset: 1 << 20 });
    return rejected(
      'external offset past EOF',
      withSide(model, [{ filename: 'w.bin', data }]),
      422,
      'invalid-model',
      /external-out-of-range/,
    );
  });

  it('external data side file missing', () => {
    const { model } = C.externalModel('w.bin');
    return rejected('external side file missing', withSide(model, []), 422, 'invalid-model', /external-missing/);
  });

  it('external data side file the model does not reference', () => {
    const { model, data } = C.externalModel('w.bin');
    return rejected(
      'unreferenced side file',
      withSide(model, [
        { filename: 'w.bin', data },
        { filename: 'extra.bin', data },
      ]),
      422,
      'invalid-model',
      /not referenced/,
    );
  });

  it('external data escaping through a symlink (inspector the API runs), and side-file names with folders', async () => {
    tried.add('external symlink escape');
    // Over HTTP a client cannot create a symlink (the server writes every byte itself, under names it reduces to
    // one path component), so the symlink case is run through the same inspector the upload route calls.
    const root = await mkdtemp(join(env.storageDir, 'symlink-'));
    try {
      await mkdir(join(root, 'staging'));
      await writeFile(join(root, 'secret.bin'), new Uint8Array(64 * 64 * 4));
      const { model } = C.externalModel('w.bin');
      await writeFile(join(root, 'staging', 'model.onnx'), model);
      await symlink(join(root, 'secret.bin'), join(root, 'staging', 'w.bin'));
      const out = await inspectModel(join(root, 'staging', 'model.onnx'));
      assert.equal(out.ok, false);
      assert.equal(!out.ok && out.code, 'external-symlink-escape');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
    // A side file sent as "../../w.bin" is stored as "w.bin" inside the upload's folder; a model that points at
    // "../../w.bin" is still refused, and nothing is written outside the storage folder.
    const { model, data } = C.externalModel('../../w.bin');
    const outside = join(dirname(env.config.workDir), 'w.bin');
    await rejected(
      'side-file name with folders',
      withSide(model, [{ filename: '../../w.bin', data }]),
      422,
      'invalid-model',
    );
    await assert.rejects(readFile(outside), { code: 'ENOENT' });
    // A side-file name that reduces to nothing usable is a 400.
    await rejected(
      'side-file name "..")',
      withSide(C.validModel(), [{ filename: '..', data }]),
      400,
      'validation-failed',
      /plain file name/,
    );
  });

  it('zip upload with path-traversal entries is not accepted as a model, and nothing is extracted', async () => {
    await rejected('zip with traversal entries', () => postModel(C.zipWithTraversal(), 'm.zip'), 422, 'invalid-model');
    const tar = C.tarWithEntry('../../../evil.onnx', C.validModel());
    await rejected('tar with traversal entry', () => postModel(tar, 'm.tar'), 422, 'invalid-model');
    for (const p of [join(env.storageDir, '..', 'evil.onnx'), join(env.config.workDir, '..', '..', 'evil.onnx')]) {
      await assert.rejects(readFile(p), { code: 'ENOENT' });
    }
  });

  it('over the size limit: 413, raw and multipart, nothing kept', async () => {
    const big = new Uint8Array(LIMIT + 1);
    await rejected('over the size limit (raw)', () => postModel(big), 413, 'upload-too-large');
    const m = multipart([{ name: 'file', filename: 'big.onnx', data: big }]);
    await rejected(
      'over the size limit (multipart)',
      () =>
        app.inject({ method: 'POST', url: '/v1/models', headers: { 'content-type': m.contentType }, payload: m.body }),
      413,
      'upload-too-large',
    );
  });

  it('upload that stops halfway (client disconnects): no temp file, no row', async () => {
    tried.add('client disconnect mid-upload');
    const before = await snapshot();
    const { port } = new URL(url);
    for (const kind of ['raw', 'multipart'] as const) {
      const total = 1024 * 1024;
      const sock = connect(Number(port), '127.0.0.1');
      await new Promise<void>((r) => sock.once('connect', () => r()));
      const boundary = 'XyZ';
      const head =
        kind === 'raw'
          ? `POST /v1/models?name=m.onnx HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total}\r\n\r\n`
          : `POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\n` +
            `Content-Length: ${total}\r\n\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n\r\n`;
      sock.write(head);
      sock.write(Buffer.alloc(300 * 1024, 7));
      // Wait until the server has started writing the staging file, then vanish.
      const staging = env.platform.storage.stagingDir;
      await waitFor(async () => (await listFiles(staging)).length > 0 || null, 10_000, 10);
      sock.destroy();
      await waitFor(async () => (await listFiles(staging)).length === 0 || null, 10_000, 20);
    }
    assert.deepEqual(await snapshot(), before);
  });

  it('multipart abuse: two file parts, an unknown file field, no file part', async () => {
    const send = (parts: Parameters<typeof multipart>[0]) => () => {
      const m = multipart(parts);
      return app.inject({
        method: 'POST',
        url: '/v1/models',
        headers: { 'content-type': m.contentType },
        payload: m.body,
      });
    };
    const good = C.validModel();
    await rejected(
      'multipart: two file parts',
      send([
        { name: 'file', filename: 'a.onnx', data: good },
        { name: 'file', filename: 'b.onnx', data: good },
      ]),
      400,
      'validation-failed',
    );
    await rejected(
      'multipart: unknown file field',
      send([
        { name: 'file', filename: 'a.onnx', data: good },
        { name: 'weights', filename: 'w', data: good },
      ]),
      400,
      'validation-failed',
    );
    await rejected('multipart: no file part', send([{ name: 'name', data: 'x' }]), 400, 'validation-failed');
  });
});

describe('models ONNX Runtime cannot load: the job fails once with a clear error', () => {
  const recipe = { method: 'sparsity', pattern: '2:4' };
  it('graph with a cycle', () =>
    failedJob('graph with a cycle', recipe, C.cycleModel(), 'onnxruntime-error', /acyclic|cycle/i));
  it('node with a missing input', () =>
    failedJob('node with a missing input', recipe, C.missingInputModel(), 'onnxruntime-error', /does_not_exist/));
  it('wrong dtype for an op', () =>
    failedJob('wrong dtype for an op', recipe, C.wrongDtypeModel(), 'onnxruntime-error', /type/i));
  it('unsupported op', () =>
    failedJob('unsupported op', recipe, C.unsupportedOpModel(), 'onnxruntime-error', /FrobnicateDefinitelyNotAnOp/));
});

describe('weights and recipes that cannot be compressed meaningfully', () => {
  it('NaN/Inf weights: reported by name, no crash', async () => {
    tried.add('NaN/Inf weights');
    const { job, cleanup } = await runJob({ method: 'sparsity', pattern: '2:4' }, C.nonFiniteModel());
    try {
      // Either outcome is acceptable as long as it names the layer: a failed job, or a result that warns.
      const said = job.state === 'failed' ? job.error.message : JSON.stringify(job.metrics?.warnings ?? []);
      assert.ok(['succeeded', 'failed'].includes(job.state), JSON.stringify(job));
      assert.match(said, /W1.*(NaN|infinite|non-finite)/i);
      if (job.state === 'succeeded') {
        const report = (await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/artifacts/report.json` })).json();
        assert.ok(report.warnings.some((w: string) => /^W1: 3 of 4096 weights are NaN or infinite/.test(w)));
        assert.ok(!report.warnings.some((w: string) => /^W2:/.test(w)), 'only the layer that has them');
      }
    } finally {
      await cleanup();
    }
  });

  it('K not divisible by M in every layer', async () => {
    tried.add('K not divisible by M in every layer');
    const { job, cleanup } = await runJob({ method: 'sparsity', pattern: '2:4' }, C.kNotDivisibleModel());
    try {
      // Nothing can change: the job fails once with the reason per layer (never a success with an unchanged model).
      assert.equal(job.state, 'failed');
      assert.match(job.error.message, /K=66 is not a multiple of M=4/);
      assert.match(job.error.message, /K=70 is not a multiple of M=4/);
      assert.equal(job.attempts, 1);
    } finally {
      await cleanup();
    }
  });

  it('soup with mismatched ingredients', () =>
    failedJob(
      'soup with mismatched ingredients',
      { method: 'soup', mode: 'uniform' },
      C.validModel(),
      'soup-structure-mismatch',
      /not the same network.*shape/,
      { ingredients: [C.widerModel()] },
    ));
});

describe('recipes with impossible values: 400/422 naming the recipe field, nothing queued', () => {
  let modelId: string;
  before(async () => {
    modelId = await uploadOk('/v1/models?name=m.onnx', C.validModel());
    baseline = await snapshot();
  });
  after(async () => {
    await del(`/v1/models/${modelId}`);
    baseline = await snapshot();
  });
  // Shape errors (the schema) are 400; values the schema admits but the method cannot do are 422 recipe-invalid.
  const cases: [string, object, number, string, RegExp][] = [
    ['pattern 4:2', { method: 'sparsity', pattern: '4:2' }, 422, 'recipe-invalid', /\/pattern: N must be < M/],
    ['pattern 0:4', { method: 'sparsity', pattern: '0:4' }, 422, 'recipe-invalid', /\/pattern: N must be > 0/],
    [
      'rankRatio > 1',
      { method: 'slim', lowRank: { rankRatio: 1.5 } },
      400,
      'validation-failed',
      /\/recipe\/lowRank\/rankRatio/,
    ],
    ['bits 3', { method: 'quantize', quant: { bits: 3 } }, 400, 'validation-failed', /\/recipe\/quant\/bits/],
    ['unknown method', { method: 'prune-everything' }, 400, 'validation-failed', /\/recipe\/method/],
    ['unknown recipe field', { method: 'sparsity', patern: '2:4' }, 400, 'validation-failed', /\/recipe\/patern/],
  ];
  for (const [cls, recipe, status, code, detail] of cases) {
    it(cls, () =>
      rejected(
        `recipe: ${cls}`,
        () => app.inject({ method: 'POST', url: '/v1/jobs', payload: { modelId, recipe } }),
        status,
        code,
        detail,
      ),
    );
  }
});

describe('calibration data that does not fit the model: 422 at submission, nothing queued', () => {
  let modelId: string;
  before(async () => {
    modelId = await uploadOk('/v1/models?name=m.onnx', C.validModel());
    baseline = await snapshot();
  });
  after(async () => {
    await del(`/v1/models/${modelId}`);
    baseline = await snapshot();
  });
  const cases: [string, () => Uint8Array, RegExp][] = [
    ['wrong names', () => C.npz({ input: C.npy('float32', [4, 64]) }), /model input "x" float32 .* has no array/],
    ['wrong dtype', () => C.npz({ x: C.npy('float64', [4, 64]) }), /data is float64, the model expects float32/],
    ['wrong shape', () => C.npz({ x: C.npy('float32', [4, 63]) }), /axis 1 is 63, the model fixes it at 64/],
    ['wrong rank', () => C.npz({ x: C.npy('float32', [4, 8, 8]) }), /data has rank 3 .*the model expects rank 2/],
    ['zero samples', () => C.npz({ x: C.npy('float32', [0, 64]) }), /has 0 samples/],
  ];
  for (const [cls, make, detail] of cases) {
    it(`calibration: ${cls}`, async () => {
      const datasetId = await uploadOk('/v1/datasets?name=c.npz', make());
      const before = await snapshot();
      tried.add(`calibration: ${cls}`);
      const res = await app.inject({
        method: 'POST',
        url: '/v1/jobs',
        payload: { modelId, recipe: { method: 'sparsity', pattern: '2:4' }, calibrationDatasetId: datasetId },
      });
      assertProblem(res, 422, 'dataset-mismatch', detail);
      assert.deepEqual(await snapshot(), before);
      await del(`/v1/datasets/${datasetId}`);
    });
  }
  it('calibration: empty file and an archive with no arrays', async () => {
    await rejected(
      'calibration: empty file',
      () => raw('/v1/datasets?name=c.npz', new Uint8Array(0)),
      400,
      'validation-failed',
      /empty/,
    );
    await rejected(
      'calibration: npz without arrays',
      () => raw('/v1/datasets?name=c.npz', C.npz({})),
      422,
      'invalid-dataset',
    );
    await rejected(
      'calibration: not a dataset',
      () => raw('/v1/datasets?name=c.bin', C.pseudoRandomBytes(100)),
      422,
      'invalid-dataset',
    );
  });
  it('calibration: .npz entries with path-traversal names are inert (never extracted) and refused at submission', async () => {
    tried.add('calibration: npz with traversal names');
    const datasetId = await uploadOk('/v1/datasets?name=c.npz', C.npz({ '../../../x': C.npy('float32', [4, 64]) }));
    const res = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { modelId, recipe: { method: 'sparsity', pattern: '2:4' }, calibrationDatasetId: datasetId },
    });
    assertProblem(res, 422, 'dataset-mismatch', /"\.\.\/\.\.\/\.\.\/x" is not a model input/);
    const files = (await snapshot()).files.filter((f) => !baseline.files.includes(f));
    assert.equal(files.length, 1, JSON.stringify(files));
    assert.match(files[0], /datasets\/[0-9a-f-]{36}\/data\.npz$/);
    await del(`/v1/datasets/${datasetId}`);
  });
});

describe('request bodies: malformed, oversized, unknown fields, wrong content types', () => {
  let modelId: string;
  before(async () => {
    modelId = await uploadOk('/v1/models?name=m.onnx', C.validModel());
    baseline = await snapshot();
  });
  after(async () => {
    await del(`/v1/models/${modelId}`);
    baseline = await snapshot();
  });
  const jobs =
    (payload: string | Buffer, type = 'application/json') =>
    () =>
      app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': type }, payload });

  it('malformed JSON', async () => {
    await rejected('malformed JSON', jobs('{"modelId": "x", "recipe": {'), 400, 'validation-failed');
    await rejected('JSON that is not an object', jobs('[1,2,3]'), 400, 'validation-failed');
    await rejected('empty JSON body', jobs(''), 400, 'validation-failed');
  });
  it('oversized JSON (over 1 MiB)', () =>
    rejected(
      'oversized JSON',
      jobs(JSON.stringify({ modelId, recipe: { method: 'sparsity', include: ['x'.repeat(1.5 * 2 ** 20)] } })),
      413,
      'upload-too-large',
    ));
  it('unknown top-level and webhook fields', async () => {
    const body = (extra: object) => JSON.stringify({ modelId, recipe: { method: 'sparsity' }, ...extra });
    await rejected('unknown field', jobs(body({ priority: 'high' })), 400, 'validation-failed', /priority|additional/i);
    await rejected(
      'unknown webhook field',
      jobs(body({ webhook: { url: 'https://example.com/h', retries: 3 } })),
      400,
      'validation-failed',
    );
  });
  it('wrong content types', async () => {
    await rejected('job as text/plain', jobs('{}', 'text/plain'), 415, 'unsupported-media-type');
    await rejected(
      'job as form-urlencoded',
      jobs('modelId=x', 'application/x-www-form-urlencoded'),
      415,
      'unsupported-media-type',
    );
    await rejected(
      'model as JSON',
      () => raw('/v1/models?name=m.onnx', '{"a":1}', 'application/json'),
      415,
      'unsupported-media-type',
    );
    await rejected(
      'model as text/plain',
      () => raw('/v1/models?name=m.onnx', 'hello', 'text/plain'),
      415,
      'unsupported-media-type',
    );
  });
});
