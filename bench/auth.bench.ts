// Cost of API-key authentication (hash → indexed lookup in Postgres, per-key rate-limit INCR in Redis) per request:
// GET /v1/jobs/:id through the app with the auth plugin vs the same app without it (default tenant), both in this
// process against the same database, same concurrency, rounds interleaved. Prints p50/p99 and their ratios.
//   npx tsx bench/auth.bench.ts [--concurrency 50] [--requests 2000]
import { Agent, request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { buildApp } from '../apps/api/app.js';
import { openServiceExtensions } from '../apps/api/plugins/service-extensions.js';
import { createApiKey } from '../packages/platform/auth/keys.js';
import { loadConfig } from '../packages/platform/config/config.js';
import { DEFAULT_TENANT_ID } from '../packages/platform/db/client.js';
import { adminQuery, connectionParts } from '../packages/platform/db/schema-engine.js';
import { openPlatform } from '../packages/platform/platform.js';

const args = process.argv.slice(2);
const opt = (name: string, d: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : d);
const concurrency = opt('--concurrency', 50);
const requests = opt('--requests', 2000);
const agent = new Agent({ keepAlive: true, maxSockets: concurrency });

const name = `oc_bench_auth_${randomBytes(3).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'oc-bench-auth-'));
const env = {
  DATABASE_URL: `postgresql://postgres@127.0.0.1:5432/${name}`,
  QUEUE_PREFIX: name,
  STORAGE_DIR: join(dir, 's'),
  WORK_DIR: join(dir, 'w'),
  LOG_LEVEL: 'warn',
  RATE_LIMIT_PER_KEY_PER_MINUTE: String(10 * requests),
};
const platform = await openPlatform(loadConfig(env));
const ext = openServiceExtensions(platform);
const withAuth = await buildApp({ deps: platform, plugins: ext.plugins, logger: false });
const without = await buildApp({ deps: platform, logger: false });
const urlAuth = await withAuth.listen({ port: 0, host: '127.0.0.1' });
const urlPlain = await without.listen({ port: 0, host: '127.0.0.1' });

// One job per tenant the two apps see: the key's tenant (auth) and the default tenant (no auth).
const key = await createApiKey(platform.db, { tenant: 'bench' });
const model = (t: string) =>
  platform.db.model.create({
    data: { tenantId: t, name: 'm', sha256: 'a'.repeat(64), sizeBytes: 1n, storageKey: 'k', inspection: {} },
  });
const job = async (t: string) =>
  (await platform.db.job.create({ data: { tenantId: t, modelId: (await model(t)).id, recipe: {}, queue: 'cpu' } })).id;
const jobAuth = await job(key.tenantId);
const jobPlain = await job(DEFAULT_TENANT_ID);

function get(url: string, headers: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () =>
        res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`HTTP ${res.statusCode}`)),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

async function run(url: string, headers: Record<string, string>): Promise<number[]> {
  const lat: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < requests) lat.push(await get(url, headers));
    }),
  );
  return lat.sort((a, b) => a - b);
}
const pct = (s: number[], p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];

const results = { auth: [] as number[][], plain: [] as number[][] };
await run(`${urlPlain}/v1/jobs/${jobPlain}`, {}); // warm-up
await run(`${urlAuth}/v1/jobs/${jobAuth}`, { authorization: `Bearer ${key.key}` });
for (let round = 0; round < 3; round++) {
  results.plain.push(await run(`${urlPlain}/v1/jobs/${jobPlain}`, {}));
  results.auth.push(await run(`${urlAuth}/v1/jobs/${jobAuth}`, { authorization: `Bearer ${key.key}` }));
}
const summary = (runs: number[][]) => {
  const all = runs.flat().sort((a, b) => a - b);
  return { p50: pct(all, 50), p99: pct(all, 99) };
};
const a = summary(results.auth);
const p = summary(results.plain);
console.log(`GET /v1/jobs/:id, ${concurrency} concurrent, ${3 * requests} requests per side`);
console.log(`  without auth (baseline): p50 ${p.p50.toFixed(2)} ms  p99 ${p.p99.toFixed(2)} ms`);
console.log(`  with API-key auth:       p50 ${a.p50.toFixed(2)} ms  p99 ${a.p99.toFixed(2)} ms`);
console.log(`  ratio auth/baseline:     p50 ×${(a.p50 / p.p50).toFixed(2)}  p99 ×${(a.p99 / p.p99).toFixed(2)}`);

await withAuth.close();
await without.close();
await ext.close();
await platform.close();
agent.destroy();
await adminQuery(connectionParts(env.DATABASE_URL), `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
rmSync(dir, { recursive: true, force: true });
