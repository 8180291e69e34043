// Storage backends on real servers: the local directory, and S3 through s3rver (an S3-compatible server in Node).
// Same contract for both: put (consuming the staged file), stat, ranged read, download, deletePrefix, unsafe keys.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import S3rver from 's3rver';
import { LocalStorage } from '../../packages/platform/storage/local.js';
import { receiveToStaging, UploadTooLargeError } from '../../packages/platform/storage/receive.js';
import { S3Storage } from '../../packages/platform/storage/s3.js';
import type { Storage } from '../../packages/platform/storage/storage.js';

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
