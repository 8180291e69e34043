// Security review, as tests: (1) tenant scoping for EVERY /v1 route, the list taken from the app itself (a route
// added later without a row in the table below fails here until someone decides how it is scoped); (2) secrets
// (API keys, webhook secrets, the database password) never reach the logs at trace level, nor a response body
// that does not exist to show them. The auth engineer's auth-tenants test checks the same 404s by hand for the
// routes that existed then; this one keeps the list complete.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../apps/api/app.js';
import { globalPlugin } from '../../apps/api/plugins/global.js';
import { openServiceExtensions, type ServiceExtensions } from '../../apps/api/plugins/service-extensions.js';
import { createApiKey } from '../../packages/platform/auth/keys.js';
import { openTestEnv, type TestEnv } from '../integration/helpers.js';
import * as C from './corpus.js';

let env: TestEnv;
let ext: ServiceExtensions;
let app: FastifyInstance;
const logs: string[] = [];
const routes: { method: string; url: string }[] = [];
let keyA = '';
let keyB = '';
const WEBHOOK_SECRET = 'whsec_' + Buffer.from('reliability-secret-0123456789abcdef').toString('base64');
const a = { modelId: '', datasetId: '', jobId: '', deliveryId: '' };

const call = (key: string | null, method: string, url: string, payload?: unknown) => {
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  if (payload instanceof Uint8Array) {
    headers['content-type'] = 'application/octet-stream';
    return app.inject({ method: method as 'GET', url, headers, payload: Buffer.from(payload) });
  }
  return app.inject({
    method: method as 'GET',
    url,
    headers,
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
};

before(async () => {
  env = await openTestEnv('security', { LOG_LEVEL: 'trace', WEBHOOK_ALLOW_HOSTS: 'hooks.example.com' });
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const collect = globalPlugin('route-collector', async (instance) => {
    instance.addHook('onRoute', (r) => {
      for (const m of [r.method].flat()) if (m !== 'HEAD') routes.push({ method: m, url: r.url });
    });
  });
  ext = openServiceExtensions(env.platform);
  app = await buildApp({
    deps: env.platform,
    plugins: [collect as never, ...ext.plugins],
    logger: { level: 'trace', stream: sink },
  });
  await app.ready();
  keyA = (await createApiKey(env.platform.db, { tenant: 'acme' })).key;
  keyB = (await createApiKey(env.platform.db, { tenant: 'globex' })).key;

  const m = await call(keyA, 'POST', '/v1/models?name=m.onnx', C.validModel());
  assert.equal(m.statusCode, 201, m.body);
  a.modelId = m.json().id;
  const d = await call(keyA, 'POST', '/v1/datasets?name=c.npz', C.goodCalibration());
  assert.equal(d.statusCode, 201, d.body);
  a.datasetId = d.json().id;
  const j = await call(keyA, 'POST', '/v1/jobs', {
    modelId: a.modelId,
    recipe: { method: 'sparsity', pattern: '2:4' },
    webhook: { url: 'https://hooks.example.com/x', secret: WEBHOOK_SECRET },
  });
  assert.equal(j.statusCode, 202, j.body);
  a.jobId = j.json().id;
  // What a finished job leaves behind (no worker runs here): an artifact and a delivery row.
  const db = env.platform.db;
  const tenantA = (await db.job.findUniqueOrThrow({ where: { id: a.jobId } })).tenantId;
  const tmp = join(tmpdir(), `oc-sec-${a.jobId}`);
  writeFileSync(tmp, '{}');
  const key = `tenants/${tenantA}/jobs/${a.jobId}/report.json`;
  await env.platform.storage.putFile(key, tmp);
  await db.artifact.create({
    data: {
      tenantId: tenantA,
      jobId: a.jobId,
      name: 'report.json',
      sizeBytes: 2n,
      sha256: createHash('sha256').update('{}').digest('hex'), // served only when it verifies
      storageKey: key,
    },
  });
  a.deliveryId = (
    await db.webhookDelivery.create({
      data: {
        tenantId: tenantA,
        jobId: a.jobId,
        eventId: 'msg_sec',
        eventType: 'job.succeeded',
        url: 'https://hooks.example.com/x',
        payload: {},
        status: 'failed',
        attempt: 1,
      },
    })
  ).id;
});

after(async () => {
  await app?.close();
  await ext?.close();
  await env?.cleanup();
});

/** How each route parameter is filled with tenant A's resources. A new parameter name must be added here. */
function fill(url: string): string {
  const byParam: Record<string, string> = {
    deliveryId: a.deliveryId,
    name: 'report.json',
  };
  return url.replace(/:([A-Za-z]+)/g, (_, p: string) => {
    if (p === 'id') {
      if (url.startsWith('/v1/models/')) return a.modelId;
      if (url.startsWith('/v1/datasets/')) return a.datasetId;
      if (url.startsWith('/v1/jobs/')) return a.jobId;
    }
    const v = byParam[p];
    if (v === undefined) throw new Error(`route ${url}: no tenant-A value for :${p}; add it to the table`);
    return v;
  });
}

/** Collection routes: what tenant B may do there, and how A's rows must stay invisible. */
const COLLECTIONS: Record<string, (method: string) => Promise<void>> = {
  '/v1/models': async (method) => {
    if (method === 'GET') await assertListHides('/v1/models', a.modelId);
    // POST creates in B's own tenant: nothing of A's is reachable.
  },
  '/v1/datasets': async (method) => {
    if (method === 'GET') await assertListHides('/v1/datasets', a.datasetId);
  },
  '/v1/jobs': async (method) => {
    if (method === 'GET') {
      await assertListHides('/v1/jobs', a.jobId);
      await assertListHides(`/v1/jobs?modelId=${a.modelId}`, a.jobId);
    }
    if (method === 'POST') {
      // A's model, dataset or ingredient named in B's job: 404, never "exists but forbidden".
      const base = { recipe: { method: 'sparsity' } };
      const own = (await call(keyB, 'POST', '/v1/models?name=b.onnx', C.validModel())).json().id as string;
      for (const body of [
        { ...base, modelId: a.modelId },
        { ...base, modelId: own, calibrationDatasetId: a.datasetId },
        { ...base, modelId: own, evalDatasetId: a.datasetId },
        { recipe: { method: 'soup' }, modelId: own, ingredientModelIds: [a.modelId] },
      ]) {
        const r = await call(keyB, 'POST', '/v1/jobs', body);
        assert.equal(r.statusCode, 404, `POST /v1/jobs ${JSON.stringify(body)} → ${r.statusCode} ${r.body}`);
      }
    }
  },
};

async function assertListHides(url: string, id: string) {
  const r = await call(keyB, 'GET', url);
  assert.equal(r.statusCode, 200, `${url}: ${r.body}`);
  assert.ok(!r.body.includes(id), `${url} shows tenant A's ${id}`);
}

test('every /v1 route is tenant-scoped: another tenant gets 404 (never 403), lists never show foreign rows', async () => {
  const v1 = routes.filter((r) => r.url.startsWith('/v1/'));
  assert.ok(v1.length >= 14, `routes seen: ${v1.map((r) => `${r.method} ${r.url}`).join(', ')}`);
  const checked: string[] = [];
  for (const { method, url } of v1) {
    if (!url.includes(':')) {
      const check = COLLECTIONS[url];
      assert.ok(check, `${method} ${url}: a collection route with no tenant check in this table`);
      await check(method);
      checked.push(`${method} ${url}`);
      continue;
    }
    const path = fill(url);
    const other = await call(keyB, method, path, method === 'POST' ? {} : undefined);
    assert.equal(
      other.statusCode,
      404,
      `${method} ${url} as another tenant → ${other.statusCode} ${other.body.slice(0, 200)}`,
    );
    assert.match(String(other.headers['content-type']), /problem\+json/);
    assert.ok(!other.body.includes(a.jobId.slice(0, 8) + 'x'), 'no foreign data in the 404');
    // The owner is not refused in the same way (so the 404 above is about tenancy, not a missing resource). The
    // event stream stays open for a live job, so it is left out here (the auth tests read it as the owner).
    if (method === 'GET' && !url.endsWith('/events')) {
      const owner = await call(keyA, method, path);
      assert.notEqual(owner.statusCode, 404, `${method} ${url} as the owner → 404: ${owner.body}`);
    }
    checked.push(`${method} ${url}`);
  }
  // Tenant A's resources survived B's DELETE/cancel/redeliver attempts.
  assert.equal((await call(keyA, 'GET', `/v1/models/${a.modelId}`)).statusCode, 200);
  assert.equal((await call(keyA, 'GET', `/v1/datasets/${a.datasetId}`)).statusCode, 200);
  const job = (await call(keyA, 'GET', `/v1/jobs/${a.jobId}`)).json();
  assert.equal(job.cancelRequested, false, "B's cancel did not reach A's job");
  console.log(`# tenant-scoped routes checked: ${checked.length}`);
});

test('secrets never reach the logs (trace level) or a response that is not meant to show them', async () => {
  // Traffic that carries every secret: valid and invalid keys, the webhook secret, errors.
  await call(keyA, 'GET', `/v1/jobs/${a.jobId}`);
  await call('oc_' + 'z'.repeat(43), 'GET', '/v1/models');
  await call(keyA, 'POST', '/v1/jobs', {
    modelId: a.modelId,
    recipe: { method: 'nope' },
    webhook: { url: 'https://hooks.example.com/y', secret: WEBHOOK_SECRET },
  });
  await call(keyA, 'GET', `/v1/jobs/${a.jobId}/webhook-deliveries`);
  const all = logs.join('');
  assert.ok(all.length > 1000, 'the capture saw the request logs');
  for (const [what, secret] of [
    ['API key A', keyA],
    ['API key B', keyB],
    ['webhook secret', WEBHOOK_SECRET],
    ['webhook secret body', WEBHOOK_SECRET.slice(6)],
  ] as const) {
    assert.ok(!all.includes(secret), `${what} appears in the logs`);
  }
  assert.doesNotMatch(all, /authorization"\s*:\s*"Bearer/i, 'no Authorization header logged');
  // The job never echoes its webhook secret; the stored API keys are hashes.
  const job = await call(keyA, 'GET', `/v1/jobs/${a.jobId}`);
  assert.ok(!job.body.includes(WEBHOOK_SECRET));
  const list = await call(keyA, 'GET', '/v1/jobs');
  assert.ok(!list.body.includes(WEBHOOK_SECRET));
  const stored = await env.platform.db.apiKey.findMany();
  for (const k of stored) assert.ok(!JSON.stringify(k).includes(keyA) && !JSON.stringify(k).includes(keyB));
});
