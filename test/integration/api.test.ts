// The HTTP API against the real Postgres and Redis (through inject): uploads, validation, problem+json, idempotency,
// pagination, cancel of a queued job, deletes, health and metrics. No worker runs here (see worker.test.ts).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../apps/api/app.js';
import { encodeNpy } from '../../packages/engine/data/npy.js';
import { loadModel, saveModel } from '../../packages/engine/onnx/model.js';
import { encodeNpz } from '../../packages/engine/data/npz.js';
import { openTestEnv, SMALL_MODEL, type TestEnv } from './helpers.js';

let env: TestEnv;
let app: FastifyInstance;
let modelBytes: Buffer;

function multipart(parts: { field: string; filename?: string; body: Buffer | string }[]) {
  const boundary = `----oc${Math.random().toString(16).slice(2)}`;
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disp = p.filename
      ? `form-data; name="${p.field}"; filename="${p.filename}"\r\nContent-Type: application/octet-stream`
      : `form-data; name="${p.field}"`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disp}\r\n\r\n`));
    chunks.push(Buffer.isBuffer(p.body) ? p.body : Buffer.from(p.body));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

async function uploadModel(name = 'cls.onnx') {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/models?name=${name}`,
    headers: { 'content-type': 'application/octet-stream' },
    payload: modelBytes,
  });
  assert.equal(res.statusCode, 201, res.body);
  return res.json();
}

function calibrationNpz(samples: number, dims = [3, 48, 192], name = 'x') {
  const n = samples * dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n).map((_, i) => Math.sin(i));
  return Buffer.from(encodeNpz({ [name]: { dtype: 'float32', dims: [samples, ...dims], data } }));
}

before(async () => {
  env = await openTestEnv('api', { MAX_UPLOAD_BYTES: String(4 * 1024 * 1024) });
  app = await buildApp({ deps: env.platform, logger: false });
  modelBytes = await readFile(SMALL_MODEL);
});

after(async () => {
  await app?.close();
  await env?.cleanup();
});

describe('models', () => {
  it('takes a raw upload: sha256, size, inspection from the CLI inspector', async () => {
    const m = await uploadModel();
    assert.equal(m.name, 'cls.onnx');
    assert.equal(m.sha256, createHash('sha256').update(modelBytes).digest('hex'));
    assert.equal(m.sizeBytes, modelBytes.length);
    assert.equal(m.inspection.inputs[0].name, 'x');
    assert.ok(m.inspection.parameters > 100_000);
    assert.ok(m.inspection.weights.some((w: { compressible: boolean }) => w.compressible));
    const got = await app.inject({ method: 'GET', url: `/v1/models/${m.id}` });
    assert.deepEqual(got.json(), m);
    // The stored bytes are the uploaded bytes.
    const stored = await readFile(
      `${env.config.storage.kind === 'local' ? env.config.storage.dir : ''}/tenants/${'00000000-0000-4000-8000-000000000001'}/models/${m.id}/model.onnx`,
    );
    assert.ok(stored.equals(modelBytes));
  });

  it('takes a multipart upload with a name field', async () => {
    const mp = multipart([
      { field: 'name', body: 'direction-classifier' },
      { field: 'file', filename: 'cls.onnx', body: modelBytes },
    ]);
    const res = await app.inject({ method: 'POST', url: '/v1/models', ...mp });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.json().name, 'direction-classifier');
  });

  it("names a multipart upload after its file when the name field is empty (Swagger UI's try-out form)", async () => {
    const mp = multipart([
      { field: 'name', body: '' },
      { field: 'file', filename: 'cls.onnx', body: modelBytes },
    ]);
    const res = await app.inject({ method: 'POST', url: '/v1/models', ...mp });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.json().name, 'cls.onnx');
    // Swagger UI pre-fills a form field with its example, or with the placeholder "string" when it has none.
    const doc = app.swagger() as any;
    for (const path of ['/v1/models', '/v1/datasets']) {
      const name = doc.paths[path].post.requestBody.content['multipart/form-data'].schema.properties.name;
      assert.equal(name.example, '', path);
    }
  });

  it('takes a model with external data (multipart externalData parts) and checks the files against the model', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'oc-ext-'));
    try {
      const model = await loadModel(SMALL_MODEL);
      await saveModel(model, join(dir, 'ext.onnx'), { externalData: { location: 'ext.onnx.data' } });
      const onnx = await readFile(join(dir, 'ext.onnx'));
      const data = await readFile(join(dir, 'ext.onnx.data'));
      const ok = await app.inject({
        method: 'POST',
        url: '/v1/models',
        ...multipart([
          { field: 'file', filename: 'ext.onnx', body: onnx },
          { field: 'externalData', filename: 'ext.onnx.data', body: data },
        ]),
      });
      assert.equal(ok.statusCode, 201, ok.body);
      assert.deepEqual(
        ok.json().externalData.map((f: { name: string; sizeBytes: number }) => [f.name, f.sizeBytes]),
        [['ext.onnx.data', data.length]],
      );
      assert.deepEqual(ok.json().inspection.externalDataFiles, ['ext.onnx.data']);
      const missing = await app.inject({
        method: 'POST',
        url: '/v1/models',
        ...multipart([{ field: 'file', filename: 'ext.onnx', body: onnx }]),
      });
      assert.equal(missing.statusCode, 422, missing.body);
      const stray = await app.inject({
        method: 'POST',
        url: '/v1/models',
        ...multipart([
          { field: 'file', filename: 'cls.onnx', body: modelBytes },
          { field: 'externalData', filename: 'other.bin', body: data },
        ]),
      });
      assert.equal(stray.statusCode, 422);
      assert.match(stray.json().detail, /not referenced/);
      const escape = await app.inject({
        method: 'POST',
        url: '/v1/models',
        ...multipart([
          { field: 'file', filename: 'ext.onnx', body: onnx },
          { field: 'externalData', filename: '.hidden', body: data },
        ]),
      });
      assert.equal(escape.statusCode, 400);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects a file that is not ONNX with 422 problem+json', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/models?name=x.onnx',
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.from('definitely not a protobuf \xff\xff\xff'),
    });
    assert.equal(res.statusCode, 422);
    assert.match(res.headers['content-type'] as string, /^application\/problem\+json/);
    assert.equal(res.json().code, 'invalid-model');
  });

  it('answers 413 past MAX_UPLOAD_BYTES, raw and multipart (never a silently truncated file)', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024 + 10, 1);
    const raw = await app.inject({
      method: 'POST',
      url: '/v1/models?name=big.onnx',
      headers: { 'content-type': 'application/octet-stream' },
      payload: big,
    });
    assert.equal(raw.statusCode, 413, raw.body);
    assert.equal(raw.json().code, 'upload-too-large');
    const mp = await app.inject({
      method: 'POST',
      url: '/v1/models',
      ...multipart([{ field: 'file', filename: 'big.onnx', body: big }]),
    });
    assert.equal(mp.statusCode, 413, mp.body);
    const count = await env.platform.db.model.count({ where: { name: 'big.onnx' } });
    assert.equal(count, 0);
  });

  it('answers 415 naming the accepted types for a model sent as JSON or text, however large (not 413)', async () => {
    const big = Buffer.alloc(13 * 1024 * 1024, 0x20);
    for (const [type, payload] of [
      ['application/json', big],
      ['text/plain', Buffer.from('hello')],
    ] as const) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/models?name=m.onnx',
        headers: { 'content-type': type },
        payload,
      });
      assert.equal(res.statusCode, 415, `${type}: ${res.body}`);
      assert.equal(res.json().code, 'unsupported-media-type');
      assert.match(res.json().detail, new RegExp(`${type}.*multipart/form-data or application/octet-stream`));
    }
    const ds = await app.inject({
      method: 'POST',
      url: '/v1/datasets',
      headers: { 'content-type': 'application/json' },
      payload: '{}',
    });
    assert.equal(ds.statusCode, 415);
    // A JSON route names JSON.
    const job = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: { 'content-type': 'text/plain' },
      payload: 'x',
    });
    assert.equal(job.statusCode, 415);
    assert.match(job.json().detail, /send application\/json/);
  });

  it('lists with a cursor, newest first', async () => {
    const a = await uploadModel('page-a.onnx');
    const b = await uploadModel('page-b.onnx');
    const first = (await app.inject({ method: 'GET', url: '/v1/models?limit=1' })).json();
    assert.equal(first.items[0].id, b.id);
    assert.ok(first.nextCursor);
    const second = (await app.inject({ method: 'GET', url: `/v1/models?limit=1&cursor=${first.nextCursor}` })).json();
    assert.equal(second.items[0].id, a.id);
    const bad = await app.inject({ method: 'GET', url: '/v1/models?cursor=zzz' });
    assert.equal(bad.statusCode, 400);
  });

  it('deletes a model without jobs; 404 afterwards', async () => {
    const m = await uploadModel('to-delete.onnx');
    assert.equal((await app.inject({ method: 'DELETE', url: `/v1/models/${m.id}` })).statusCode, 204);
    const gone = await app.inject({ method: 'GET', url: `/v1/models/${m.id}` });
    assert.equal(gone.statusCode, 404);
    assert.equal(gone.json().code, 'model-not-found');
  });
});

describe('datasets', () => {
  it('summarises .npz and .npy uploads', async () => {
    const npz = await app.inject({
      method: 'POST',
      url: '/v1/datasets?name=calib.npz',
      headers: { 'content-type': 'application/octet-stream' },
      payload: calibrationNpz(2),
    });
    assert.equal(npz.statusCode, 201, npz.body);
    assert.deepEqual(npz.json().tensors, [{ name: 'x', dtype: 'float32', shape: [2, 3, 48, 192] }]);
    assert.equal(npz.json().format, 'npz');
    const arr = { dtype: 'float32' as const, dims: [2, 3, 48, 192], data: new Float32Array(2 * 3 * 48 * 192) };
    const npy = await app.inject({
      method: 'POST',
      url: '/v1/datasets?name=calib.npy',
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.from(encodeNpy(arr)),
    });
    assert.equal(npy.statusCode, 201, npy.body);
    assert.deepEqual(npy.json().tensors, [{ name: 'array', dtype: 'float32', shape: [2, 3, 48, 192] }]);
  });

  it('rejects a truncated .npy (header promises more bytes than sent)', async () => {
    const arr = { dtype: 'float32' as const, dims: [4, 4], data: new Float32Array(16) };
    const bytes = Buffer.from(encodeNpy(arr)).subarray(0, -4);
    const res = await app.inject({
      method: 'POST',
      url: '/v1/datasets?name=bad.npy',
      headers: { 'content-type': 'application/octet-stream' },
      payload: bytes,
    });
    assert.equal(res.statusCode, 422);
    assert.equal(res.json().code, 'invalid-dataset');
  });
});

describe('jobs', () => {
  it('validates the body and names the recipe problems (400), semantic ones as 422', async () => {
    const m = await uploadModel();
    const typo = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { modelId: m.id, recipe: { method: 'sparsity', patern: '2:4' } },
    });
    assert.equal(typo.statusCode, 400);
    assert.deepEqual(typo.json().errors, [{ path: '/recipe/patern', message: 'unknown field' }]);
    const semantic = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { modelId: m.id, recipe: { method: 'sparsity', pattern: '4:4' } },
    });
    assert.equal(semantic.statusCode, 422);
    assert.equal(semantic.json().code, 'recipe-invalid');
    assert.equal(semantic.json().errors[0].path, '/pattern');
    // An enum: the allowed values once, not one "must be equal to constant" per value.
    for (const [recipe, path, message] of [
      [
        { method: 'sparsity', criterion: 'wnda' },
        '/recipe/criterion',
        'must be one of "magnitude", "wanda", "sparsegpt" (got "wnda")',
      ],
      [{ method: 'quantize', quant: { bits: 3 } }, '/recipe/quant/bits', 'must be one of 4, 8 (got 3)'],
    ] as const) {
      const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { modelId: m.id, recipe } });
      assert.equal(res.statusCode, 400, res.body);
      assert.deepEqual(res.json().errors, [{ path, message }]);
      assert.equal(res.json().detail, `${path}: ${message}`);
    }
    // A method's minimum model count is its declaration (soups: the model and at least one ingredient).
    const lonelySoup = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { modelId: m.id, recipe: { method: 'soup', mode: 'uniform' } },
    });
    assert.equal(lonelySoup.statusCode, 422);
    assert.deepEqual(lonelySoup.json().errors, [
      { path: '/ingredientModelIds', message: 'a soup needs at least one ingredient besides modelId' },
    ]);
    const noModel = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { modelId: '11111111-1111-4111-8111-111111111111', recipe: { method: 'sparsity' } },
    });
    assert.equal(noModel.statusCode, 404);
    assert.equal(noModel.json().code, 'model-not-found');
  });

  it('refuses at submit a method that needs calibration data when none is named (unless calibration.random)', async () => {
    const m = await uploadModel();
    const before = await env.platform.db.job.count();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { modelId: m.id, recipe: { method: 'sparsity', pattern: '2:4', criterion: 'wanda' } },
    });
    assert.equal(res.statusCode, 422, res.body);
    assert.equal(res.json().code, 'calibration-required');
    assert.equal(
      res.json().detail,
      'method "sparsity" with criterion "wanda" needs calibration data: give a calibration file ' +
        '(.npz/.npy/TensorProto folder; --calibration FILE on the CLI, calibrationDatasetId in the API) or set ' +
        '"calibration": {"random": true} in the recipe; criterion "magnitude" needs no calibration',
    );
    assert.equal(await env.platform.db.job.count(), before, 'nothing queued');
    const slim = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { modelId: m.id, recipe: { method: 'slim' } },
    });
    assert.equal(slim.json().code, 'calibration-required');
    const random = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { modelId: m.id, recipe: { method: 'sparsity', criterion: 'sparsegpt', calibration: { random: true } } },
    });
    assert.equal(random.statusCode, 202, random.body);
    await app.inject({ method: 'POST', url: `/v1/jobs/${random.json().id}/cancel` });
  });

  it('checks datasets against the model inputs', async () => {
    const m = await uploadModel();
    const wrong = (
      await app.inject({
        method: 'POST',
        url: '/v1/datasets?name=wrong.npz',
        headers: { 'content-type': 'application/octet-stream' },
        payload: calibrationNpz(2, [3, 48, 192], 'image'),
      })
    ).json();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { modelId: m.id, recipe: { method: 'sparsity' }, calibrationDatasetId: wrong.id },
    });
    assert.equal(res.statusCode, 422);
    assert.equal(res.json().code, 'dataset-mismatch');
    assert.match(res.json().detail, /model input "x" float32 .* has no array/);
  });

  it('queues a job, honours Idempotency-Key, cancels it while queued', async () => {
    const m = await uploadModel();
    const body = { modelId: m.id, recipe: { method: 'sparsity', pattern: '2:4' } };
    const first = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: body,
      headers: { 'idempotency-key': 'k-1' },
    });
    assert.equal(first.statusCode, 202, first.body);
    const job = first.json();
    assert.equal(job.state, 'queued');
    assert.equal(job.recipe.criterion, 'magnitude'); // stored with defaults filled in
    const again = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: body,
      headers: { 'idempotency-key': 'k-1' },
    });
    assert.equal(again.json().id, job.id);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    const other = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { ...body, recipe: { method: 'sparsity', pattern: '1:4' } },
      headers: { 'idempotency-key': 'k-1' },
    });
    assert.equal(other.statusCode, 422);
    assert.equal(other.json().code, 'idempotency-key-reused');
    const bull = await env.platform.queues.byDevice.cpu.getJob(job.id);
    assert.equal(await bull?.getState(), 'waiting');

    const inUse = await app.inject({ method: 'DELETE', url: `/v1/models/${m.id}` });
    assert.equal(inUse.statusCode, 409);
    assert.equal(inUse.json().code, 'model-in-use');
    assert.match(inUse.json().detail, new RegExp(`^1 job refer to this model: ${job.id} \\(queued\\);`));
    const active = await app.inject({ method: 'DELETE', url: `/v1/jobs/${job.id}` });
    assert.equal(active.statusCode, 409);

    const cancel = await app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel` });
    assert.equal(cancel.statusCode, 202);
    assert.equal(cancel.json().state, 'cancelled');
    assert.equal(await env.platform.queues.byDevice.cpu.getJob(job.id), undefined);
    const twice = await app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel` });
    assert.equal(twice.statusCode, 409);
    assert.equal(twice.json().code, 'job-not-cancellable');

    const listed = (await app.inject({ method: 'GET', url: '/v1/jobs?state=cancelled' })).json();
    assert.ok(listed.items.some((j: { id: string }) => j.id === job.id));
    assert.equal((await app.inject({ method: 'DELETE', url: `/v1/jobs/${job.id}` })).statusCode, 204);
    assert.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}` })).statusCode, 404);
  });

  it('answers concurrent retries with one Idempotency-Key with one job', async () => {
    const m = await uploadModel();
    const body = { modelId: m.id, recipe: { method: 'sparsity' } };
    const all = await Promise.all(
      Array.from({ length: 6 }, () =>
        app.inject({ method: 'POST', url: '/v1/jobs', payload: body, headers: { 'idempotency-key': 'race-1' } }),
      ),
    );
    assert.deepEqual(
      all.map((r) => r.statusCode),
      Array(6).fill(202),
    );
    assert.equal(new Set(all.map((r) => r.json().id)).size, 1);
    assert.equal(await env.platform.db.job.count({ where: { idempotencyKey: 'race-1' } }), 1);
  });

  it('sends device:"gpu" recipes to compress-gpu', async () => {
    const m = await uploadModel();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { modelId: m.id, recipe: { method: 'sparsity', device: 'gpu' } },
    });
    assert.equal(res.json().queue, 'gpu');
    assert.ok(await env.platform.queues.byDevice.gpu.getJob(res.json().id));
  });
});

describe('errors, health, metrics', () => {
  it('answers unknown routes and bad ids with problem+json', async () => {
    const nf = await app.inject({ method: 'GET', url: '/v1/nothing' });
    assert.equal(nf.statusCode, 404);
    assert.equal(nf.json().type, 'urn:onnx-compress:problem:not-found');
    const badId = await app.inject({ method: 'GET', url: '/v1/jobs/not-a-uuid' });
    assert.equal(badId.statusCode, 400);
    assert.equal(badId.json().code, 'validation-failed');
  });

  it('the first /metrics scrape after jobs finished already has their durations', async () => {
    // A fresh app: its histogram starts empty and folds in jobs finished after it started.
    const fresh = await buildApp({ deps: env.platform, logger: false });
    try {
      const m = await uploadModel('metrics.onnx');
      const startedAt = new Date(Date.now() - 3000);
      for (const state of ['succeeded', 'failed'] as const) {
        await env.platform.db.job.create({
          data: {
            tenantId: '00000000-0000-4000-8000-000000000001',
            modelId: m.id,
            recipe: {},
            queue: 'cpu',
            state,
            startedAt,
            finishedAt: new Date(Date.now() + 1000),
          },
        });
      }
      const text = (await fresh.inject({ method: 'GET', url: '/metrics' })).body;
      assert.match(text, /onnx_compress_metrics_scrape_jobs_observed 2/);
      assert.match(text, /onnx_compress_job_duration_seconds_count\{state="succeeded"\} 1/);
      assert.match(text, /onnx_compress_job_duration_seconds_count\{state="failed"\} 1/);
      const again = (await fresh.inject({ method: 'GET', url: '/metrics' })).body;
      assert.match(again, /onnx_compress_metrics_scrape_jobs_observed 0/);
      assert.match(again, /onnx_compress_job_duration_seconds_count\{state="succeeded"\} 1/, 'observed once');
    } finally {
      await fresh.close();
    }
  });

  it('Swagger UI and openapi.json carry the package version', async () => {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
    assert.equal(doc.info.version, pkg.version);
  });

  it('logs a line when a job is queued (no secrets)', async () => {
    const out: Record<string, unknown>[] = [];
    const stream = { write: (line: string) => void out.push(JSON.parse(line)) };
    const logged = await buildApp({ deps: env.platform, logger: { level: 'info', stream } });
    try {
      const m = await uploadModel('logged.onnx');
      const res = await logged.inject({
        method: 'POST',
        url: '/v1/jobs',
        payload: {
          modelId: m.id,
          recipe: { method: 'sparsity' },
          webhook: { url: 'https://example.com/h', secret: 'whsec_c2VjcmV0' },
        },
      });
      assert.equal(res.statusCode, 202, res.body);
      const line = out.find((l) => l.msg === 'job queued');
      assert.ok(line, JSON.stringify(out));
      assert.equal(line.jobId, res.json().id);
      assert.equal(line.method, 'sparsity');
      assert.equal(line.queue, 'cpu');
      assert.equal(JSON.stringify(out).includes('whsec_'), false, 'no secret in the log');
      await logged.inject({ method: 'POST', url: `/v1/jobs/${res.json().id}/cancel` });
    } finally {
      await logged.close();
    }
  });

  it('reports ready and exposes Prometheus metrics', async () => {
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200, ready.body);
    assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).json().status, 'ok');
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(text, /onnx_compress_jobs\{state="queued"\} \d+/);
    assert.match(text, /onnx_compress_queue_depth\{queue="gpu",status="waiting"\} [1-9]/);
    assert.match(text, /onnx_compress_upload_bytes_total\{kind="model"\} [1-9]/);
  });
});
