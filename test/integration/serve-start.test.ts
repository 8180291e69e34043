// `onnx-compress serve` as a user starts it (the binary, a real Postgres and Redis): /healthz answers once it listens,
// SIGTERM closes it cleanly, and a start that fails after the platform opened (the port is taken) exits with the
// error instead of hanging on its open connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { databaseUrl, deleteRedisPrefix, dropDatabase, REDIS_URL, uniqueName } from './helpers.js';
import { removeDir, tempDir } from '../helpers/onnx-fixtures.js';

const BIN = join(process.cwd(), 'bin', 'onnx-compress.mjs');

function serve(env: Record<string, string>) {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'warn', REDIS_URL, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  return { child, exited, output: () => output };
}

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

test('serve: /healthz answers 200 once it listens; SIGTERM exits 0', async () => {
  const name = uniqueName('serve_start');
  const dir = tempDir('serve-start-');
  const port = await freePort();
  const s = serve({
    DATABASE_URL: databaseUrl(name),
    QUEUE_PREFIX: name,
    STORAGE_DIR: join(dir, 'storage'),
    HOST: '127.0.0.1',
    PORT: String(port),
  });
  try {
    let status = 0;
    const deadline = Date.now() + 90_000;
    while (status !== 200 && Date.now() < deadline && s.child.exitCode === null) {
      status = await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.status,
        () => 0,
      );
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 200, s.output());
    s.child.kill('SIGTERM');
    const [code] = await s.exited;
    assert.equal(code, 0, s.output());
  } finally {
    s.child.kill('SIGKILL');
    await dropDatabase(databaseUrl(name));
    await deleteRedisPrefix(name);
    removeDir(dir);
  }
});

test('serve: a port already taken ends the process with the error (the opened connections are closed)', async () => {
  const name = uniqueName('serve_taken');
  const dir = tempDir('serve-taken-');
  const taken = createServer().listen(0, '127.0.0.1');
  await once(taken, 'listening');
  const s = serve({
    DATABASE_URL: databaseUrl(name),
    QUEUE_PREFIX: name,
    STORAGE_DIR: join(dir, 'storage'),
    HOST: '127.0.0.1',
    PORT: String((taken.address() as AddressInfo).port),
  });
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 90_000);
  try {
    const [code, signal] = await s.exited;
    assert.equal(signal, null, `still running after 90 s: ${s.output()}`);
    assert.equal(code, 1, s.output());
    assert.match(s.output(), /^error: listen EADDRINUSE/m);
  } finally {
    clearTimeout(timer);
    taken.close();
    await dropDatabase(databaseUrl(name));
    await deleteRedisPrefix(name);
    removeDir(dir);
  }
});
