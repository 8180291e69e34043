// Upload throughput and server memory: a 1 GiB .npy dataset streamed to POST /v1/datasets over loopback (raw body,
// then multipart), against a baseline in the same run: a bare Node HTTP server that writes the body to a file in
// the same folder (same disk, no hashing, no framework). The server runs in a child process; its RSS is sampled
// from /proc every 20 ms. Targets: >= 300 MB/s, RSS growth < 100 MB.
//   npx tsx bench/upload.bench.ts [--mib 1024]
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';

const args = process.argv.slice(2);
const mode = args[0] === '--serve' ? args[1] : 'main';

async function rss(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(s)![1]) * 1024;
}

// ---- child: one of the two servers --------------------------------------------------------------------------------
if (mode === 'baseline') {
  const dir = args[2];
  let n = 0;
  const server = createServer((req, res) => {
    const dest = join(dir, `baseline-${n++}`);
    pipeline(req, createWriteStream(dest, { highWaterMark: 1 << 20 })).then(
      async () => {
        await rm(dest, { force: true });
        res.writeHead(201).end('{}');
      },
      () => res.writeHead(500).end(),
    );
  });
  server.listen(0, '127.0.0.1', () =>
    console.log(JSON.stringify({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}` })),
  );
} else if (mode === 'service') {
  const dir = args[2];
  const { loadConfig } = await import('../packages/platform/config/config.js');
  const { startServer } = await import('../apps/api/server.js');
  const config = loadConfig({
    ...process.env,
    DATABASE_URL: `postgresql://postgres@127.0.0.1:5432/${args[3]}`,
    QUEUE_PREFIX: args[3],
    STORAGE_DIR: join(dir, 'storage'),
    WORK_DIR: join(dir, 'work'),
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    MAX_UPLOAD_BYTES: String(4 * 1024 ** 3),
  });
  const s = await startServer(config);
  console.log(JSON.stringify({ url: s.url }));
} else {
  await main();
}

function startChild(kind: string, ...extra: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL(import.meta.url).pathname, '--serve', kind, ...extra],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const line = buf.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve({ child, url: (JSON.parse(line) as { url: string }).url });
    });
    child.on('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
}

interface Run {
  seconds: number;
  status: number;
  baseRss: number;
  peakRss: number;
}

async function upload(
  url: string,
  pid: number,
  body: () => Readable,
  length: number,
  headers: Record<string, string>,
): Promise<Run> {
  const baseRss = await rss(pid);
  let peakRss = baseRss;
  const sampler = setInterval(
    () =>
      void rss(pid).then(
        (r) => (peakRss = Math.max(peakRss, r)),
        () => {},
      ),
    20,
  );
  const t0 = performance.now();
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { ...headers, 'content-length': String(length) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    body().pipe(req);
  });
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  peakRss = Math.max(peakRss, await rss(pid));
  return { seconds, status, baseRss, peakRss };
}

async function main() {
  const mib = Number(args[args.indexOf('--mib') + 1] || 1024) || 1024;
  const dir = await mkdtemp(join(tmpdir(), 'oc-upload-bench-'));
  const db = `oc_bench_upload_${process.pid}`;
  const children: ChildProcess[] = [];
  try {
    // A valid .npy: float32 [mib*256Ki] (header padded to 128 bytes), data of varied bytes.
    const elements = mib * 256 * 1024;
    const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${elements},), }`;
    const headerLen = 128 - 10;
    const preamble = Buffer.concat([
      Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]),
      Buffer.from([headerLen & 0xff, headerLen >> 8]),
      Buffer.from(header.padEnd(headerLen - 1, ' ') + '\n', 'latin1'),
    ]);
    const file = join(dir, 'big.npy');
    const fh = await open(file, 'w');
    await fh.write(preamble);
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 2654435761) >>> 24;
    for (let i = 0; i < mib; i++) await fh.write(chunk);
    await fh.close();
    const size = (await stat(file)).size;
    const mb = size / 1e6;
    console.log(`upload of ${(size / 2 ** 30).toFixed(2)} GiB over loopback (2 shared cores: noisy; rerun when quiet)`);

    const base = await startChild('baseline', dir);
    children.push(base.child);
    const b = await upload(base.url, base.child.pid!, () => createReadStream(file, { highWaterMark: 1 << 20 }), size, {
      'content-type': 'application/octet-stream',
    });
    const svc = await startChild('service', dir, db);
    children.push(svc.child);
    // Steady state: one small upload first, so the inspector thread's start is not counted in the big one.
    const tiny = Buffer.concat([
      preamble.subarray(0, 10),
      Buffer.from(
        `{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }`.padEnd(headerLen - 1, ' ') + '\n',
        'latin1',
      ),
      Buffer.alloc(4),
    ]);
    await upload(`${svc.url}/v1/datasets?name=tiny.npy`, svc.child.pid!, () => Readable.from([tiny]), tiny.length, {
      'content-type': 'application/octet-stream',
    });
    const raw = await upload(
      `${svc.url}/v1/datasets?name=big.npy`,
      svc.child.pid!,
      () => createReadStream(file, { highWaterMark: 1 << 20 }),
      size,
      { 'content-type': 'application/octet-stream' },
    );
    const boundary = '----ocbench';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.npy"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const mp = await upload(
      `${svc.url}/v1/datasets`,
      svc.child.pid!,
      () =>
        Readable.from(
          (async function* () {
            yield head;
            yield* createReadStream(file, { highWaterMark: 1 << 20 });
            yield tail;
          })(),
        ),
      size + head.length + tail.length,
      { 'content-type': `multipart/form-data; boundary=${boundary}` },
    );
    const row = (name: string, r: Run) =>
      `${name.padEnd(28)} ${String(r.status).padStart(4)} ${(mb / r.seconds).toFixed(0).padStart(8)} MB/s ` +
      `${((r.peakRss - r.baseRss) / 2 ** 20).toFixed(1).padStart(8)} MiB RSS growth  ` +
      `(ratio to baseline ${(mb / r.seconds / (mb / b.seconds)).toFixed(2)})`;
    console.log(`${'run'.padEnd(28)} code  throughput       server RSS`);
    console.log(row('baseline (bare http → file)', b));
    console.log(row('POST /v1/datasets raw', raw));
    console.log(row('POST /v1/datasets multipart', mp));
    const ok = (r: Run) => r.status === 201 && mb / r.seconds >= 300 && r.peakRss - r.baseRss < 100 * 2 ** 20;
    console.log(
      `targets (>= 300 MB/s, < 100 MB RSS growth): raw ${ok(raw) ? 'met' : 'NOT met'}, multipart ${ok(mp) ? 'met' : 'NOT met'}`,
    );
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    const { adminQuery } = await import('../packages/platform/db/schema-engine.js');
    await adminQuery(
      { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' },
      `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`,
    ).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}
