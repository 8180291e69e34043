// Start-up of the `onnx-compress` binary, against `node -e 0` measured in the same run (rounds interleave the
// baseline with every target, so load on the machine hits both alike). Median of --reps runs each:
//   --help                              target ≤ node -e 0 + 0.3 s
//   inspect of PP-OCRv4 rec (10.8 MB)   target ≤ 0.8 s (process start to exit)
//   compress → first progress line      target ≤ 0.5 s (process start to the first "[  n%] …" line on stderr)
//   serve → first 200 from /healthz     target ≤ 2 s, the database already migrated (NOT RUN without Postgres)
//   npx onnx-compress --help            reported separately (npx's own start-up is not the package's)
// For compress and serve it also prints the CPU seconds the process had used when it was ready (Linux /proc): a
// figure that hardly moves with the machine's load, where the wall times on a shared machine do.
// Run: npx tsx bench/startup.bench.ts [--reps 5] [--bin PATH/bin/onnx-compress.mjs] [--from-sources] [--no-serve]
//   --bin           measure another checkout's binary (e.g. /work/main/bin/onnx-compress.mjs for a before/after)
//   --from-sources  ONNX_COMPRESS_FROM_SOURCES=1: the tsx path, as a checkout without a build runs
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const value = (name: string, dflt: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const REPS = Number(value('--reps', '5'));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = resolve(value('--bin', join(ROOT, 'bin', 'onnx-compress.mjs')));
const MODEL = join(ROOT, 'node_modules', '@gutenye', 'ocr-models', 'assets', 'ch_PP-OCRv4_rec_infer.onnx');
const DATABASE_URL =
  process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/onnx_compress_bench_startup';
const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'warn' };
delete env.ONNX_COMPRESS_FROM_SOURCES;
if (flag('--from-sources')) env.ONNX_COMPRESS_FROM_SOURCES = '1';

interface Run {
  /** Seconds from spawn to the moment `until` said done (or to exit). */
  seconds: number;
  /**
   * CPU seconds (user + system) the process had used by then, read from /proc (Linux; runs that end with the process
   * have none): unlike wall time it hardly depends on the load on the machine, so it says what a quiet machine would
   * see, roughly, where the wall times of a shared machine cannot.
   */
  cpu?: number;
}

/** CPU seconds (utime + stime) of a running process, from /proc/PID/stat; undefined where that is not readable. */
function cpuSeconds(pid: number | undefined): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime), counted after the command name: indexes 11 and 12. Ticks of 1/100 s
    // (USER_HZ, 100 on every mainstream Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/**
 * Spawns `cmd args` and resolves with the seconds until `until` (given each stderr/stdout chunk so far, or a poll)
 * returns true, or until the process exits when there is no `until`. The process is then stopped with `stop`.
 */
function timed(
  cmd: string,
  args: string[],
  opts: { until?: (out: string) => boolean; poll?: () => Promise<boolean>; stop?: NodeJS.Signals; cwd?: string } = {},
): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env, cwd: opts.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let done: number | null = null;
    let cpu: number | undefined;
    let polling = true;
    const finish = () => {
      if (done !== null) return;
      done = (performance.now() - t0) / 1000;
      cpu = cpuSeconds(child.pid);
      polling = false;
      if (opts.until || opts.poll) child.kill(opts.stop ?? 'SIGTERM');
    };
    const onData = (b: Buffer) => {
      out += b.toString();
      if (opts.until?.(out)) finish();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    if (opts.poll) {
      const poll = opts.poll;
      void (async () => {
        while (polling) {
          if (await poll()) finish();
          else await new Promise((r) => setTimeout(r, 10));
        }
      })();
    }
    child.on('error', reject);
    child.on('exit', (code) => {
      polling = false;
      if (done === null && (opts.until || opts.poll)) {
        reject(new Error(`${cmd} ${args.join(' ')} exited (${code}) before it was ready:\n${out.slice(-2000)}`));
        return;
      }
      if (done === null && code !== 0) {
        reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}:\n${out.slice(-2000)}`));
        return;
      }
      resolvePromise({ seconds: done ?? (performance.now() - t0) / 1000, cpu });
    });
  });
}

async function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => r(port));
    });
  });
}

async function healthy(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

async function postgresUp(): Promise<boolean> {
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: DATABASE_URL.replace(/\/[^/]*$/, '/postgres') });
  try {
    await c.connect();
    await c.end();
    return true;
  } catch {
    return false;
  }
}

async function serveOnce(work: string): Promise<Run> {
  const port = await freePort();
  env.PORT = String(port);
  env.HOST = '127.0.0.1';
  env.DATABASE_URL = DATABASE_URL;
  env.STORAGE_DIR = join(work, 'storage');
  env.QUEUE_PREFIX = 'bench-startup';
  return timed(process.execPath, [BIN, 'serve'], { poll: () => healthy(port) });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'startup-bench-'));
  const recipe = join(work, 'recipe.json');
  writeFileSync(recipe, JSON.stringify({ method: 'sparsity', pattern: '2:4', criterion: 'magnitude' }));
  const out = join(work, 'out.onnx');
  const serve = !flag('--no-serve') && (await postgresUp());
  if (serve) await serveOnce(work); // creates and migrates the database: "when the database exists"

  const targets: { name: string; run: () => Promise<Run> }[] = [
    { name: 'node -e 0', run: () => timed(process.execPath, ['-e', '0']) },
    { name: '--help', run: () => timed(process.execPath, [BIN, '--help']) },
    { name: 'inspect', run: () => timed(process.execPath, [BIN, 'inspect', MODEL]) },
    {
      name: 'compress',
      run: () =>
        timed(process.execPath, [BIN, 'compress', MODEL, '--recipe', recipe, '-o', out], {
          until: (s) => /^\[\s*\d+%\]/m.test(s),
          stop: 'SIGINT', // compress aborts cleanly on SIGINT and removes its scratch folder
        }),
    },
    ...(serve ? [{ name: 'serve', run: () => serveOnce(work) }] : []),
    {
      name: 'npx',
      run: () => timed('npx', ['--no-install', 'onnx-compress', '--help'], { cwd: dirname(dirname(BIN)) }),
    },
  ];
  const times = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  const cpus = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  const load = loadavg()[0];
  for (let r = 0; r < REPS; r++) {
    for (const t of targets) {
      const r = await t.run();
      times.get(t.name)!.push(r.seconds);
      if (r.cpu !== undefined) cpus.get(t.name)!.push(r.cpu);
    }
  }
  rmSync(work, { recursive: true, force: true });

  const base = median(times.get('node -e 0')!);
  const m = (name: string) => median(times.get(name)!);
  const s = (x: number) => `${x.toFixed(2)} s`;
  const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED');
  console.log(`onnx-compress start-up: ${BIN}${flag('--from-sources') ? ' (from sources, tsx)' : ''}`);
  console.log(`median of ${REPS}; load average ${load.toFixed(1)} → ${loadavg()[0].toFixed(1)} during the run`);
  console.log(`  node -e 0 (baseline)              ${s(base)}`);
  const help = m('--help');
  console.log(
    `  --help                            ${s(help)}  baseline +${s(help - base)}, ${(help / base).toFixed(2)}×  ` +
      `target ≤ +0.30 s: ${verdict(help - base <= 0.3)}`,
  );
  for (const [name, label, target] of [
    ['inspect', 'inspect PP-OCRv4 rec (10.8 MB)', 0.8],
    ['compress', 'compress → first progress line', 0.5],
    ['serve', 'serve → first 200 /healthz', 2],
  ] as const) {
    if (!times.has(name)) {
      console.log(`  ${label.padEnd(33)} NOT RUN (no Postgres at ${DATABASE_URL.replace(/\/[^/]*$/, '')})`);
      continue;
    }
    const v = m(name);
    const cpu = cpus.get(name)!.length ? `; CPU ${s(median(cpus.get(name)!))}` : '';
    console.log(
      `  ${label.padEnd(33)} ${s(v)}  baseline +${s(v - base)}, ${(v / base).toFixed(2)}×  ` +
        `target ≤ ${target.toFixed(2)} s: ${verdict(v <= target)}${cpu}`,
    );
  }
  const npx = m('npx');
  console.log(`  npx onnx-compress --help          ${s(npx)}  baseline +${s(npx - base)} (npx itself: not a target)`);
}

await main();
