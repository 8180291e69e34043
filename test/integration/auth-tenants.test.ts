// API keys and tenants over real HTTP, Postgres and Redis: every /v1 route needs a valid bearer key (401 otherwise,
// revoked keys included); another tenant's model, dataset, job, artifact, event stream and webhook deliveries are
// 404s, never 403s; per-key rate limits answer 429 with Retry-After; per-tenant quotas hold.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApiKey, listApiKeys, revokeApiKey } from '../../packages/platform/auth/keys.js';
import { startTestService, type TestService } from './auth-support.js';
import { createTestDatabase, dropRedisPrefix, uniquePrefix, type TestDatabase } from './webhooks-support.js';

const MODEL = readFileSync(new URL('../fixtures/soup/dense.onnx', import.meta.url));
const DATASET = readFileSync(new URL('../fixtures/soup/val.npz', import.meta.url));

let tdb: TestDatabase;
let svc: TestService;
const prefix = uniquePrefix('auth');
let keyA = '';
let keyB = '';
/** Tenant A's resources, created through the API. */
const a = { modelId: '', datasetId: '', jobId: '', deliveryId: '' };

const call = (key: string | null, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  fetch(svc.url + path, {
    method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(body instanceof Uint8Array ? { 'content-type': 'application/octet-stream' } : {}),
      ...(body !== undefined && !(body instanceof Uint8Array) ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : body instanceof Uint8Array ? body : JSON.stringify(body),
  });

before(async () => {
  tdb = await createTestDatabase('auth');
  svc = await startTestService(tdb.url, prefix);
  keyA = (await createApiKey(svc.platform.db, { tenant: 'acme', name: 'ci' })).key;
  keyB = (await createApiKey(svc.platform.db, { tenant: 'globex' })).key;

  const m = await call(keyA, 'POST', '/v1/models?name=dense.onnx', new Uint8Array(MODEL));
  assert.equal(m.status, 201, await m.clone().text());
  a.modelId = ((await m.json()) as { id: string }).id;
  const d = await call(keyA, 'POST', '/v1/datasets?name=val.npz', new Uint8Array(DATASET));
  assert.equal(d.status, 201, await d.clone().text());
  a.datasetId = ((await d.json()) as { id: string }).id;
  const j = await call(keyA, 'POST', '/v1/jobs', {
    modelId: a.modelId,
    recipe: { method: 'sparsity', pattern: '2:4' },
    webhook: { url: 'https://hooks.example.com/x' },
  });
  assert.equal(j.status, 202, await j.clone().text());
  a.jobId = ((await j.json()) as { id: string }).id;
  // What a finished job leaves: an artifact in storage and a delivery row (no worker runs in this file).
  const db = svc.platform.db;
  const tenantA = (await db.job.findUniqueOrThrow({ where: { id: a.jobId } })).tenantId;
  const tmp = join(tmpdir(), `oc-artifact-${a.jobId}`);
  writeFileSync(tmp, 'report');
  const key = `tenants/${tenantA}/jobs/${a.jobId}/report.json`;
  await svc.platform.storage.putFile(key, tmp);
  await db.artifact.create({
    data: {
      tenantId: tenantA,
      jobId: a.jobId,
      name: 'report.json',
      sizeBytes: 6n,
      sha256: createHash('sha256').update('report').digest('hex'), // served only when it verifies
      storageKey: key,
    },
  });
  const delivery = await db.webhookDelivery.create({
    data: {
      tenantId: tenantA,
      jobId: a.jobId,
      eventId: 'msg_test',
      eventType: 'job.succeeded',
      url: 'https://hooks.example.com/x',
      payload: {},
      status: 'failed',
      attempt: 1,
    },
  });
  a.deliveryId = delivery.id;
});

after(async () => {
  await svc?.close();
  await dropRedisPrefix(prefix);
  await tdb?.drop();
});

test('no key, a malformed header or an unknown key: 401 problem+json with WWW-Authenticate', async () => {
  for (const headers of [
    {},
    { authorization: 'Basic dXNlcjpwYXNz' },
    { authorization: 'Bearer oc_' + 'x'.repeat(43) },
  ]) {
    const r = await fetch(svc.url + '/v1/models', { headers: headers as Record<string, string> });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
    const p = (await r.json()) as { code: string; status: number };
    assert.equal(p.code, 'unauthorized');
    assert.equal(p.status, 401);
  }
  // Routes outside /v1 stay open.
  assert.equal((await fetch(svc.url + '/healthz')).status, 200);
});

test('a valid key works and records last use; a revoked key is 401 from then on', async () => {
  const created = await createApiKey(svc.platform.db, { tenant: 'acme', name: 'temp' });
  const before = (await listApiKeys(svc.platform.db, { tenant: 'acme' })).find((k) => k.id === created.id)!;
  assert.equal(before.lastUsedAt, null);
  assert.equal((await call(created.key, 'GET', '/v1/models')).status, 200);
  const used = (await listApiKeys(svc.platform.db, { tenant: 'acme' })).find((k) => k.id === created.id)!;
  assert.ok(used.lastUsedAt instanceof Date);
  await revokeApiKey(svc.platform.db, created.id);
  const r = await call(created.key, 'GET', '/v1/models');
  assert.equal(r.status, 401);
  assert.equal(((await r.json()) as { code: string }).code, 'unauthorized');
  // Other keys of the same tenant keep working.
  assert.equal((await call(keyA, 'GET', '/v1/models')).status, 200);
});

test('the owner sees its resources (so the 404s below are about tenancy, not broken routes)', async () => {
  for (const path of [
    `/v1/models/${a.modelId}`,
    `/v1/datasets/${a.datasetId}`,
    `/v1/jobs/${a.jobId}`,
    `/v1/jobs/${a.jobId}/artifacts/report.json`,
    `/v1/jobs/${a.jobId}/webhook-deliveries`,
  ]) {
    const r = await call(keyA, 'GET', path);
    assert.equal(r.status, 200, `${path}: ${await r.text()}`);
  }
});

test("another tenant's model, dataset, job, artifact, events and deliveries are 404 for every method", async () => {
  const cases: [string, string][] = [
    ['GET', `/v1/models/${a.modelId}`],
    ['DELETE', `/v1/models/${a.modelId}`],
    ['GET', `/v1/datasets/${a.datasetId}`],
    ['DELETE', `/v1/datasets/${a.datasetId}`],
    ['GET', `/v1/jobs/${a.jobId}`],
    ['POST', `/v1/jobs/${a.jobId}/cancel`],
    ['DELETE', `/v1/jobs/${a.jobId}`],
    ['GET', `/v1/jobs/${a.jobId}/layers`],
    ['GET', `/v1/jobs/${a.jobId}/artifacts/report.json`],
    ['GET', `/v1/jobs/${a.jobId}/events`],
    ['GET', `/v1/jobs/${a.jobId}/webhook-deliveries`],
    ['POST', `/v1/jobs/${a.jobId}/webhook-deliveries/${a.deliveryId}/redeliver`],
  ];
  for (const [method, path] of cases) {
    const r = await call(keyB, method, path);
    assert.equal(r.status, 404, `${method} ${path} → ${r.status}`);
    assert.match(r.headers.get('content-type') ?? '', /problem\+json/);
  }
  // Using A's model or dataset in B's job is also "not found".
  const j = await call(keyB, 'POST', '/v1/jobs', { modelId: a.modelId, recipe: { method: 'sparsity' } });
  assert.equal(j.status, 404);
  // B's lists do not contain A's rows.
  for (const path of ['/v1/models', '/v1/datasets', '/v1/jobs']) {
    const list = (await (await call(keyB, 'GET', path)).json()) as { items: { id: string }[] };
    assert.deepEqual(list.items, [], path);
  }
  // And nothing of A's was changed by B's attempts.
  assert.equal((await call(keyA, 'GET', `/v1/models/${a.modelId}`)).status, 200);
  assert.equal((await call(keyA, 'GET', `/v1/jobs/${a.jobId}`)).status, 200);
});

test('the OpenAPI document declares the bearer scheme and every /v1 operation requires it', async () => {
  const doc = (await (await fetch(svc.url + '/openapi.json')).json()) as {
    components: { securitySchemes: Record<string, { type: string; scheme: string }> };
    paths: Record<string, Record<string, { security?: unknown }>>;
  };
  assert.deepEqual(
    { type: doc.components.securitySchemes.bearerAuth.type, scheme: doc.components.securitySchemes.bearerAuth.scheme },
    { type: 'http', scheme: 'bearer' },
  );
  const v1 = Object.entries(doc.paths).filter(([p]) => p.startsWith('/v1/'));
  assert.ok(v1.length >= 8);
  for (const [p, ops] of v1) {
    for (const [m, op] of Object.entries(ops)) assert.deepEqual(op.security, [{ bearerAuth: [] }], `${m} ${p}`);
  }
});

test('per-key rate limit: 429 with Retry-After past the limit, other keys unaffected', async () => {
  const limited = await startTestService(
    tdb.url,
    prefix + '_rl',
    { RATE_LIMIT_PER_KEY_PER_MINUTE: '3' },
    { migrate: false },
  );
  try {
    const k1 = (await createApiKey(limited.platform.db, { tenant: 'rl' })).key;
    const k2 = (await createApiKey(limited.platform.db, { tenant: 'rl' })).key;
    const get = (k: string) => fetch(limited.url + '/v1/models', { headers: { authorization: `Bearer ${k}` } });
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await get(k1)).status);
    // A window boundary can fall inside the loop (then the 4th passes); the 5th and 6th cannot both pass.
    let last = await get(k1);
    if (last.status !== 429) last = await get(k1);
    assert.deepEqual(codes.slice(0, 3), [200, 200, 200]);
    assert.equal(last.status, 429);
    const retry = Number(last.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 60, `retry-after ${retry}`);
    assert.equal(((await last.json()) as { code: string }).code, 'rate-limited');
    assert.equal((await get(k2)).status, 200);
  } finally {
    await limited.close();
    await dropRedisPrefix(prefix + '_rl');
  }
});

test('per-tenant quotas: concurrent jobs (429) and stored bytes (413)', async () => {
  const q = await startTestService(
    tdb.url,
    prefix + '_q',
    {
      TENANT_MAX_CONCURRENT_JOBS: '1',
      TENANT_MAX_STORAGE_BYTES: String(MODEL.length + 100),
    },
    { migrate: false },
  );
  try {
    const k = (await createApiKey(q.platform.db, { tenant: 'quota' })).key;
    const post = (path: string, body: unknown) =>
      fetch(q.url + path, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${k}`,
          'content-type': body instanceof Uint8Array ? 'application/octet-stream' : 'application/json',
        },
        body: body instanceof Uint8Array ? body : JSON.stringify(body),
      });
    const m = await post('/v1/models?name=m.onnx', new Uint8Array(MODEL));
    assert.equal(m.status, 201);
    const modelId = ((await m.json()) as { id: string }).id;
    const over = await post('/v1/models?name=m2.onnx', new Uint8Array(MODEL));
    assert.equal(over.status, 413);
    assert.match(((await over.json()) as { detail: string }).detail, /limit of \d+/);
    assert.equal((await post('/v1/jobs', { modelId, recipe: { method: 'sparsity' } })).status, 202);
    const second = await post('/v1/jobs', { modelId, recipe: { method: 'sparsity' } });
    assert.equal(second.status, 429);
    assert.ok(second.headers.get('retry-after'));
    assert.match(((await second.json()) as { detail: string }).detail, /limit is 1/);
  } finally {
    await q.close();
    await dropRedisPrefix(prefix + '_q');
  }
});
