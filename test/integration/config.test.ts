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

it('one loader for the auth and webhook sections: their defaults, PUBLIC_URL from the validated PORT', () => {
  const c = loadConfig({});
  assert.deepEqual(c.auth, {
    rateLimitPerKeyPerMinute: 600,
    maxConcurrentJobs: 0,
    maxStorageBytes: 0,
    bootstrapFirstKey: false,
  });
  assert.deepEqual(c.webhooks.retryScheduleMs, [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36e6, 36e6]);
  assert.equal(c.webhooks.retryJitter, 0.2);
  assert.equal(c.webhooks.connectTimeoutMs, 5000);
  assert.equal(c.webhooks.responseTimeoutMs, 15_000);
  assert.equal(c.webhooks.concurrency, 10);
  assert.equal(c.webhooks.sweepIntervalMs, 5000);
  assert.equal(c.webhooks.publicBaseUrl, 'http://localhost:8080');
  assert.equal(loadConfig({ PORT: '9090' }).webhooks.publicBaseUrl, 'http://localhost:9090');
  assert.equal(loadConfig({ PUBLIC_URL: 'https://oc.example' }).webhooks.publicBaseUrl, 'https://oc.example');
  assert.equal(loadConfig({ BOOTSTRAP_API_KEY: 'yes' }).auth.bootstrapFirstKey, true);
  const bad: [Record<string, string>, string][] = [
    [
      { RATE_LIMIT_PER_KEY_PER_MINUTE: '-1' },
      'RATE_LIMIT_PER_KEY_PER_MINUTE must be a non-negative integer (got "-1")',
    ],
    [{ TENANT_MAX_STORAGE_BYTES: '1.5' }, 'TENANT_MAX_STORAGE_BYTES must be a non-negative integer (got "1.5")'],
    [{ BOOTSTRAP_API_KEY: 'sure' }, 'BOOTSTRAP_API_KEY must be true or false (got "sure")'],
    [{ WEBHOOK_RETRY_JITTER: '2' }, 'WEBHOOK_RETRY_JITTER must be a number in [0, 1] (got "2")'],
    [{ WEBHOOK_SWEEP_MS: '10' }, 'WEBHOOK_SWEEP_MS must be a number in [50, 3600000] (got "10")'],
    // A bad PORT is named as PORT, not as a broken default PUBLIC_URL (the webhook section used to read PORT again).
    [{ PORT: 'x' }, 'PORT must be an integer in [0, 65535] (got "x")'],
  ];
  for (const [env, message] of bad) {
    assert.throws(
      () => loadConfig(env),
      (e: Error) => e instanceof ConfigError && e.message === message,
    );
  }
  assert.throws(
    () => loadConfig({ WEBHOOK_RETRY_SCHEDULE: 'soon' }),
    (e: Error) => e instanceof ConfigError && /WEBHOOK_RETRY_SCHEDULE|soon/.test(e.message),
  );
});
