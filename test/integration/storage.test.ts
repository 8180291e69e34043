// Storage backends on real servers: the local directory, and S3 through s3rver (an S3-compatible server in Node).
// Same contract for both: put (consuming the staged file), stat, ranged read, download, deletePrefix, unsafe keys.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import fsp, { mkdir, mkdtemp, open, readdir, readFile, realpath, rm, utimes, writeFile } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import S3rver from 's3rver';
import { LocalStorage } from '../../packages/platform/storage/local.js';
import { receiveToStaging, UploadTooLargeError } from '../../packages/platform/storage/receive.js';
import { S3Storage } from '../../packages/platform/storage/s3.js';
import { StorageIntegrityError, type Storage } from '../../packages/platform/storage/storage.js';
import { startStagingSweeper, sweepStaging } from '../../packages/platform/storage/sweep.js';
import { ConfigError, loadConfig } from '../../packages/platform/config/config.js';
import { fillDisk, listFiles, mountTmpfs } from '../reliability/support.js';

let dir: string;
let s3server: S3rver;
const backends: Record<string, Storage> = {};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oc-storage-'));
  backends.local = await LocalStorage.open(join(dir, 'local'));
  s3server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory: join(dir, 's3rver'),
    configureBuckets: [{ name: 'artifacts', configs: [] }],
  });
  const { port } = (await s3server.run()) as { port: number };
  backends.s3 = await S3Storage.open(
    {
      kind: 's3',
      bucket: 'artifacts',
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      accessKeyId: 'S3RVER',
      secretAccessKey: 'S3RVER',
      prefix: 'svc',
    },
    join(dir, 'work'),
  );
});

after(async () => {
  (backends.s3 as S3Storage | undefined)?.close();
  await s3server?.close();
  await rm(dir, { recursive: true, force: true });
});

const read = async (s: NodeJS.ReadableStream) => {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
};

for (const name of ['local', 's3']) {
  describe(`${name} storage`, () => {
    it('stores, stats, reads ranges, downloads and deletes by prefix', async () => {
      const s = backends[name];
      await s.check();
      const bytes = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251));
      const staged = join(s.stagingDir, 'f1');
      await writeFile(staged, bytes);
      await s.putFile('tenants/t/jobs/j/a1/model.onnx', staged);
      assert.equal(existsSync(staged), false, 'the staged file is consumed');
      await writeFile(join(s.stagingDir, 'f2'), 'report');
      await s.putFile('tenants/t/jobs/j/a1/report.json', join(s.stagingDir, 'f2'));
      assert.deepEqual(await s.stat('tenants/t/jobs/j/a1/model.onnx'), { sizeBytes: bytes.length });
      assert.equal(await s.stat('tenants/t/jobs/j/a1/none'), null);
      assert.ok((await read(await s.read('tenants/t/jobs/j/a1/model.onnx'))).equals(bytes));
      const part = await read(await s.read('tenants/t/jobs/j/a1/model.onnx', { start: 99_990, end: 99_999 }));
      assert.ok(part.equals(bytes.subarray(99_990)));
      const local = join(dir, `dl-${name}`, 'm.onnx');
      await s.download('tenants/t/jobs/j/a1/model.onnx', local);
      assert.ok((await readFile(local)).equals(bytes));
      await assert.rejects(s.read('tenants/t/nothing'), { name: 'StorageNotFoundError' });
      await s.deletePrefix('tenants/t/jobs/j/');
      assert.equal(await s.stat('tenants/t/jobs/j/a1/model.onnx'), null);
      assert.equal(await s.stat('tenants/t/jobs/j/a1/report.json'), null);
    });

    it('readVerified serves bytes (and ranges) only while they match the recorded sha256', async () => {
      const s = backends[name];
      const bytes = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7) % 256));
      const expected = { sha256: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.length };
      const key = 'tenants/t/jobs/v/a1/model.onnx';
      await writeFile(join(s.stagingDir, 'v1'), bytes);
      await s.putFile(key, join(s.stagingDir, 'v1'));
      const cache = (s as LocalStorage | S3Storage).verified;
      const hashesBefore = cache.hashes;
      assert.ok((await read(await s.readVerified(key, expected))).equals(bytes));
      const part = await read(await s.readVerified(key, expected, { start: 10, end: 19 }));
      assert.ok(part.equals(bytes.subarray(10, 20)));
      assert.equal(cache.hashes - hashesBefore, 1, 'an unchanged object is hashed once, not per read');
      await assert.rejects(s.readVerified(key, { ...expected, sha256: '0'.repeat(64) }), StorageIntegrityError);
      const hashes = cache.hashes;
      await assert.rejects(s.readVerified(key, { ...expected, sizeBytes: bytes.length + 1 }), StorageIntegrityError);
      assert.equal(cache.hashes, hashes, 'a size mismatch is refused without reading the object');
      await assert.rejects(s.readVerified('tenants/t/none', expected), { name: 'StorageNotFoundError' });

      // One flipped byte in the stored file (written in place, as a failing disk or a stray process would).
      const file =
        name === 'local' ? join(dir, 'local', key) : join(dir, 's3rver', 'artifacts', `svc/${key}._S3rver_object`);
      const fh = await open(file, 'r+');
      await fh.write(Buffer.from([bytes[25_000] ^ 0x01]), 0, 1, 25_000);
      await fh.close();
      if (name === 's3') cache.forget(key); // an S3 object cannot change in place; s3rver's file can, its ETag stays
      await assert.rejects(s.readVerified(key, expected), StorageIntegrityError);
      await assert.rejects(s.readVerified(key, expected, { start: 0, end: 9 }), StorageIntegrityError, 'ranges too');
      await s.deletePrefix('tenants/t/jobs/v/');
    });

    it('refuses keys that could leave their folder', async () => {
      for (const key of ['../x', 'a/../../b', '/abs', 'a//b', 'a\\b', '']) {
        await assert.rejects(backends[name].stat(key), /unsafe storage key/);
      }
    });
  });
}

describe('receiveToStaging', () => {
  it('hashes and counts while streaming, and stops at the limit leaving no file behind', async () => {
    const staging = join(dir, 'recv');
    await (await import('node:fs/promises')).mkdir(staging, { recursive: true });
    const chunks = Array.from({ length: 50 }, (_, i) => Buffer.alloc(10_000, i));
    const got = await receiveToStaging(Readable.from(chunks), { stagingDir: staging, maxBytes: 500_000 });
    assert.equal(got.sizeBytes, 500_000);
    assert.equal(got.sha256, createHash('sha256').update(Buffer.concat(chunks)).digest('hex'));
    await assert.rejects(
      receiveToStaging(Readable.from(chunks), { stagingDir: staging, maxBytes: 499_999 }),
      UploadTooLargeError,
    );
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual(await readdir(staging), [got.path.split('/').pop()]);
  });
});

describe('local commits are durable', () => {
  it('putFile fsyncs the file before the rename and its folder after it', async () => {
    const storage = await LocalStorage.open(join(dir, 'durable'));
    const src = join(storage.stagingDir, 'upload-fsync');
    await writeFile(src, 'an upload');
    const seen: string[] = [];
    const probe = await open(src, 'r');
    const FileHandle = Object.getPrototypeOf(probe) as { sync(this: { fd: number }): Promise<void> };
    await probe.close();
    const { sync } = FileHandle;
    const { rename } = fsp;
    FileHandle.sync = async function (this: { fd: number }) {
      seen.push(`sync ${await realpath(`/proc/self/fd/${this.fd}`)}`);
      return sync.call(this);
    };
    fsp.rename = async (from, to) => {
      seen.push(`rename ${String(from)} ${String(to)}`);
      return rename(from, to);
    };
    syncBuiltinESMExports(); // local.ts's named import of rename now sees the wrapper
    try {
      await storage.putFile('tenants/t/models/m/model.onnx', src);
    } finally {
      FileHandle.sync = sync;
      fsp.rename = rename;
      syncBuiltinESMExports();
    }
    const dest = join(storage.dir, 'tenants/t/models/m/model.onnx');
    assert.deepEqual(seen, [`sync ${src}`, `rename ${src} ${dest}`, `sync ${join(storage.dir, 'tenants/t/models/m')}`]);
    assert.equal(await readFile(dest, 'utf8'), 'an upload');
  });
});

describe('staging sweep', () => {
  it('removes entries nothing wrote to for the age limit, keeps younger ones (uploads in flight elsewhere)', async () => {
    const staging = join(dir, 'sweep');
    await mkdir(join(staging, 'old-upload'), { recursive: true });
    await writeFile(join(staging, 'old-upload', 'main'), 'half an upload');
    await writeFile(join(staging, 'copy-old'), 'half a copy');
    await mkdir(join(staging, 'live-upload'), { recursive: true });
    await writeFile(join(staging, 'live-upload', 'main'), 'being written');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    for (const p of ['old-upload/main', 'old-upload', 'copy-old', 'live-upload']) {
      await utimes(join(staging, p), twoHoursAgo, twoHoursAgo);
    }
    // live-upload's folder is old, but its file was written just now: it is in flight.
    const removed = await sweepStaging(staging, 3600_000);
    assert.deepEqual(removed.sort(), ['copy-old', 'old-upload']);
    assert.deepEqual(await readdir(staging), ['live-upload']);
    assert.deepEqual(await sweepStaging(join(dir, 'no-such-folder'), 1000), []);
  });

  it('also sweeps periodically, not only at start', async () => {
    const staging = join(dir, 'sweep-periodic');
    await mkdir(staging, { recursive: true });
    const lines: string[] = [];
    const log = {
      info: (_o: object, m: string) => void lines.push(m),
      warn: (_o: object, m: string) => void lines.push(m),
    };
    const sweeper = startStagingSweeper(staging, 60_000, log, 100);
    try {
      await sweeper.first;
      // Left by an upload cut short after the start sweep ran: only a later pass can remove it.
      await writeFile(join(staging, 'upload-late'), 'half an upload');
      const hourAgo = new Date(Date.now() - 3600_000);
      await utimes(join(staging, 'upload-late'), hourAgo, hourAgo);
      const deadline = Date.now() + 10_000;
      while ((await readdir(staging)).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(await readdir(staging), []);
      assert.deepEqual(lines, ['staging sweep removed abandoned uploads']);
    } finally {
      sweeper.stop();
    }
  });

  it('STAGING_MAX_AGE_MS: 1 hour by default, validated', () => {
    assert.equal(loadConfig({}).stagingMaxAgeMs, 3_600_000);
    assert.equal(loadConfig({ STAGING_MAX_AGE_MS: '60000' }).stagingMaxAgeMs, 60_000);
    for (const bad of ['0', '999', '1h', '-5'])
      assert.throws(
        () => loadConfig({ STAGING_MAX_AGE_MS: bad }),
        (e: Error) => e instanceof ConfigError && /^STAGING_MAX_AGE_MS/.test(e.message),
      );
  });
});

describe('LocalStorage.putFile across file systems', () => {
  it('copies through staging and leaves no partial file when the destination fills up (ENOSPC)', async (t) => {
    const root = join(dir, 'tmpfs-root');
    const mount = await mountTmpfs(root, 1024 * 1024);
    if (!mount.ok) {
      t.skip(`no tmpfs: ${mount.reason}`);
      return;
    }
    try {
      const s = await LocalStorage.open(root); // on the tmpfs; the source files are on the test's disk
      const small = join(dir, 'small.bin');
      await writeFile(small, Buffer.alloc(10_000, 1));
      await s.putFile('tenants/t/a/small.bin', small);
      assert.equal((await s.stat('tenants/t/a/small.bin'))?.sizeBytes, 10_000, 'a cross-device copy commits');
      assert.equal(existsSync(small), false, 'and consumes the source');

      const big = join(dir, 'big.bin');
      await writeFile(big, Buffer.alloc(2 * 1024 * 1024, 2));
      await assert.rejects(s.putFile('tenants/t/a/big.bin', big), { code: 'ENOSPC' });
      assert.deepEqual(await listFiles(root), ['tenants/t/a/small.bin'], 'no partial copy, no half object');
      assert.equal(existsSync(big), true, 'the source is kept for the caller to deal with');
      await rm(big);

      // Full to the last page: same outcome.
      const filler = await fillDisk(root, 0);
      await writeFile(small, Buffer.alloc(10_000, 3));
      await assert.rejects(s.putFile('tenants/t/a/again.bin', small), { code: 'ENOSPC' });
      assert.deepEqual(await listFiles(root), [filler.slice(root.length + 1), 'tenants/t/a/small.bin'].sort());
    } finally {
      await mount.unmount();
    }
  });
});
