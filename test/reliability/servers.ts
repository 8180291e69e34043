// Throwaway Redis and PostgreSQL servers for the restart tests, on free ports, in temp folders, stopped (and their
// folders removed) at the end whatever happens. The shared servers on 6379/5432 are never touched.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => (c.destroy(), resolve(true)));
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`port ${port} did not open within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const exited = (p: ChildProcess) =>
  p.exitCode !== null || p.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((r) => p.once('exit', () => r()));

/**
 * redis-server with append-only persistence (fsync always): what a deployment that must not lose jobs runs; or, with
 * `persistent: false`, none at all (no AOF, no RDB): a restart comes back empty, as a cache-configured Redis does.
 */
export class ThrowawayRedis {
  private proc?: ChildProcess;
  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly persistent: boolean,
  ) {}

  static async start(opts: { persistent?: boolean } = {}): Promise<ThrowawayRedis> {
    const dir = await mkdtemp(join(tmpdir(), 'oc-redis-'));
    const r = new ThrowawayRedis(await freePort(), dir, opts.persistent ?? true);
    await r.up();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    if (this.persistent) args.push('--appendonly', 'yes', '--appendfsync', 'always');
    else args.push('--appendonly', 'no');
    args.push('--daemonize', 'no');
    this.proc = spawn('redis-server', args, { stdio: 'ignore' });
    await waitForPort(this.port);
  }

  /** A crash: SIGKILL, no shutdown save (the append-only file is all that survives). */
  async kill(): Promise<void> {
    if (!this.proc) return;
    this.proc.kill('SIGKILL');
    await exited(this.proc);
    this.proc = undefined;
  }

  async stop(): Promise<void> {
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }
}

function pgBin(name: string): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(root, v, 'bin', name))) return join(root, v, 'bin', name);
  return name;
}

/** A PostgreSQL cluster in a temp folder (trust auth), run as the postgres OS user when we are root. */
export class ThrowawayPostgres {
  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  private static asUser(): string[] {
    return process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  }

  private run(cmd: string, args: string[]): void {
    const argv = [...ThrowawayPostgres.asUser(), pgBin(cmd), ...args];
    const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr || r.stdout}`);
  }

  static async start(): Promise<ThrowawayPostgres> {
    const dir = await mkdtemp(join(tmpdir(), 'oc-pg-'));
    await chmod(dir, 0o777);
    const pg = new ThrowawayPostgres(await freePort(), dir);
    pg.run('initdb', ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
    await pg.up();
    return pg;
  }

  get url(): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/oc_reliability`;
  }

  async up(): Promise<void> {
    const opts = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`;
    this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-o', opts, '-l', join(this.dir, 'log'), '-w', 'start']);
    await waitForPort(this.port);
  }

  /** Immediate shutdown: connections are cut like a crash. */
  async down(): Promise<void> {
    this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
  }

  async stop(): Promise<void> {
    try {
      await this.down();
    } catch {
      // already stopped
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

export interface NodeProcess {
  proc: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL (a crash) and wait for the exit. */
  crash(): Promise<void>;
}

/** Runs `node --import tsx <args>` (or a bin script) from the repository root with exactly `env`. */
export function spawnNode(args: string[], env: Record<string, string>): NodeProcess {
  const proc = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: new URL('../..', import.meta.url).pathname,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exitedP = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.once('exit', (code, signal) => r({ code, signal })),
  );
  return {
    proc,
    output: () => out,
    exited: exitedP,
    async crash() {
      proc.kill('SIGKILL');
      await exitedP;
    },
  };
}
