// Configuration: defaults, and a clear error naming the variable for every bad value.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../packages/platform/config/config.js';

it('has the documented defaults', () => {
  const c = loadConfig({});
  assert.equal(c.port, 8080);
  assert.equal(c.host, '0.0.0.0');
  assert.equal(c.databaseUrl, 'postgresql://postgres@127.0.0.1:5432/onnx_compress');
  assert.equal(c.redisUrl, 'redis://127.0.0.1:6379');
  assert.equal(c.storage.kind, 'local');
  assert.deepEqual(c.workerQueues, ['cpu']);
  assert.deepEqual(c.executionProviders, ['cpu']);
  assert.equal(c.maxUploadBytes, 8 * 1024 ** 3);
  assert.deepEqual(loadConfig({ WORKER_QUEUES: 'gpu,cpu' }).executionProviders, ['cuda', 'cpu']);
});

it('reads S3 settings', () => {
  const c = loadConfig({
    STORAGE_BACKEND: 's3',
    S3_BUCKET: 'b',
    S3_ENDPOINT: 'http://minio:9000',
    S3_ACCESS_KEY_ID: 'a',
    S3_SECRET_ACCESS_KEY: 's',
  });
  assert.deepEqual(c.storage, {
    kind: 's3',
    bucket: 'b',
    endpoint: 'http://minio:9000',
    region: 'us-east-1',
    forcePathStyle: true,
    accessKeyId: 'a',
    secretAccessKey: 's',
    prefix: '',
  });
});

it('rejects bad values, naming the variable', () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ PORT: '80a' }, /^PORT/],
    [{ PORT: '70000' }, /^PORT/],
    [{ DATABASE_URL: 'mysql://x' }, /^DATABASE_URL/],
    [{ REDIS_URL: 'not a url' }, /^REDIS_URL/],
    [{ WORKER_QUEUES: 'cpu,tpu' }, /^WORKER_QUEUES/],
    [{ EXECUTION_PROVIDERS: 'rocm' }, /^EXECUTION_PROVIDERS/],
    [{ GPU_AVAILABLE: 'maybe' }, /^GPU_AVAILABLE/],
    [{ STORAGE_BACKEND: 'ftp' }, /^STORAGE_BACKEND/],
    [{ STORAGE_BACKEND: 's3' }, /^S3_BUCKET/],
    [{ STORAGE_BACKEND: 's3', S3_BUCKET: 'b', S3_ACCESS_KEY_ID: 'a' }, /S3_SECRET_ACCESS_KEY/],
    [{ QUEUE_PREFIX: 'a:b' }, /^QUEUE_PREFIX/],
    [{ MAX_UPLOAD_BYTES: '0' }, /^MAX_UPLOAD_BYTES/],
  ];
  for (const [env, message] of bad)
    assert.throws(
      () => loadConfig(env),
      (e: Error) => e instanceof ConfigError && message.test(e.message),
    );
});
