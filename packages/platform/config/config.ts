// Service configuration: read once from the environment, validated, then passed to whoever needs it. Nothing else in
// the service reads process.env. One loader for every section (service, auth, webhooks): a bad value anywhere stops
// the process at start with a ConfigError naming the variable, whichever part of the service would have used it.
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { authSection, type AuthConfig } from './auth.js';
import { bool, ConfigError, int, list, url, type Env } from './parse.js';
import { webhookSection, type WebhookConfig } from './webhooks.js';

export { ConfigError } from './parse.js';
export type { AuthConfig } from './auth.js';
export type { WebhookConfig } from './webhooks.js';

export type StorageConfig =
  | { kind: 'local'; dir: string }
  | {
      kind: 's3';
      bucket: string;
      /** Custom endpoint for S3-compatible stores (MinIO, R2, …); unset for AWS. */
      endpoint?: string;
      region: string;
      /** Path-style URLs (bucket in the path): what MinIO and most self-hosted stores need. */
      forcePathStyle: boolean;
      accessKeyId?: string;
      secretAccessKey?: string;
      /** Key prefix inside the bucket. */
      prefix: string;
    };

export interface Config {
  /** @defaultValue 8080 */
  port: number;
  /** @defaultValue '0.0.0.0' */
  host: string;
  /** @defaultValue 'postgresql://postgres@127.0.0.1:5432/onnx_compress' */
  databaseUrl: string;
  /** @defaultValue 'redis://127.0.0.1:6379' */
  redisUrl: string;
  /** Prefix of every BullMQ key and pub/sub channel (lets several deployments share one Redis). @defaultValue 'oc' */
  queuePrefix: string;
  storage: StorageConfig;
  /** Scratch space for uploads in flight and for workers (downloaded inputs, engine output). */
  workDir: string;
  /**
   * Staging entries (uploads cut short by a crash) nothing has written to for this long are removed at API start and
   * periodically; keep it above the longest pause of a slow upload, as other replicas sharing the storage may be
   * mid-upload. @defaultValue 3600000 (1 hour)
   */
  stagingMaxAgeMs: number;
  /** Largest accepted upload, per file. @defaultValue 8 GiB */
  maxUploadBytes: number;
  /** Jobs one worker process runs at once. @defaultValue 1 */
  workerConcurrency: number;
  /** Which queues this worker consumes. @defaultValue ['cpu'] */
  workerQueues: ('cpu' | 'gpu')[];
  /** Execution providers the worker tries in order (cuda first on GPU workers). @defaultValue ['cpu'] */
  executionProviders: ('cuda' | 'cpu')[];
  /** Whether jobs with device "auto" go to the gpu queue (set where GPU workers exist). @defaultValue false */
  gpuAvailable: boolean;
  /** Attempts per job for transient failures (bad input is never retried). @defaultValue 3 */
  jobAttempts: number;
  /** First retry delay of a transient failure (doubles each attempt). @defaultValue 5000 */
  retryBackoffMs: number;
  /** Milliseconds after which a running job whose worker stopped renewing its lock is handed to another worker. */
  stalledIntervalMs: number;
  /** pino level. @defaultValue 'info' */
  logLevel: string;
  /** Requests per minute per client on /v1 (0 disables). @defaultValue 0 */
  rateLimitPerMinute: number;
  /**
   * How often the API re-enqueues jobs Postgres holds as queued/running whose BullMQ entry is gone (Redis lost its
   * data); it also runs at start and whenever Redis reconnects. 0: only then. @defaultValue 60000
   */
  reconcileIntervalMs: number;
  /** API keys: rate limit, quotas, first-key bootstrap. */
  auth: AuthConfig;
  /** Webhook delivery: schedule, SSRF exemptions, timeouts, payload links. */
  webhooks: WebhookConfig;
}

function storage(env: Env): StorageConfig {
  const kind = (env.STORAGE_BACKEND || 'local').toLowerCase();
  if (kind === 'local') return { kind, dir: resolve(env.STORAGE_DIR || join(process.cwd(), 'data', 'storage')) };
  if (kind !== 's3') throw new ConfigError(`STORAGE_BACKEND must be local or s3 (got "${env.STORAGE_BACKEND}")`);
  const bucket = env.S3_BUCKET;
  if (!bucket) throw new ConfigError('S3_BUCKET is required when STORAGE_BACKEND=s3');
  const endpoint = env.S3_ENDPOINT ? url(env, 'S3_ENDPOINT', '', ['http:', 'https:']) : undefined;
  const accessKeyId = env.S3_ACCESS_KEY_ID || undefined;
  const secretAccessKey = env.S3_SECRET_ACCESS_KEY || undefined;
  if (Boolean(accessKeyId) !== Boolean(secretAccessKey)) {
    throw new ConfigError(
      'S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together (or leave both unset for the SDK chain)',
    );
  }
  return {
    kind,
    bucket,
    endpoint,
    region: env.S3_REGION || 'us-east-1',
    forcePathStyle: bool(env, 'S3_FORCE_PATH_STYLE', endpoint !== undefined),
    accessKeyId,
    secretAccessKey,
    prefix: (env.S3_PREFIX ?? '').replace(/^\/+/, ''),
  };
}

/** Reads and validates the configuration; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const queuePrefix = env.QUEUE_PREFIX || 'oc';
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(queuePrefix)) {
    throw new ConfigError('QUEUE_PREFIX: 1–64 characters of A–Z a–z 0–9 _ . -');
  }
  const workerQueues = list(env, 'WORKER_QUEUES', ['cpu', 'gpu'] as const, ['cpu']);
  const port = int(env, 'PORT', 8080, 0, 65535);
  return {
    port,
    host: env.HOST || '0.0.0.0',
    databaseUrl: url(env, 'DATABASE_URL', 'postgresql://postgres@127.0.0.1:5432/onnx_compress', [
      'postgresql:',
      'postgres:',
    ]),
    redisUrl: url(env, 'REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    queuePrefix,
    storage: storage(env),
    workDir: resolve(env.WORK_DIR || join(tmpdir(), 'onnx-compress')),
    stagingMaxAgeMs: int(env, 'STAGING_MAX_AGE_MS', 60 * 60 * 1000, 1000),
    maxUploadBytes: int(env, 'MAX_UPLOAD_BYTES', 8 * 1024 ** 3, 1),
    workerConcurrency: int(env, 'WORKER_CONCURRENCY', 1, 1, 64),
    workerQueues,
    executionProviders: list(
      env,
      'EXECUTION_PROVIDERS',
      ['cuda', 'cpu'] as const,
      workerQueues.includes('gpu') ? ['cuda', 'cpu'] : ['cpu'],
    ),
    gpuAvailable: bool(env, 'GPU_AVAILABLE', false),
    jobAttempts: int(env, 'JOB_ATTEMPTS', 3, 1, 20),
    retryBackoffMs: int(env, 'RETRY_BACKOFF_MS', 5_000, 0),
    stalledIntervalMs: int(env, 'STALLED_INTERVAL_MS', 30_000, 500),
    logLevel: env.LOG_LEVEL || (env.NODE_ENV === 'test' ? 'warn' : 'info'),
    rateLimitPerMinute: int(env, 'RATE_LIMIT_PER_MINUTE', 0, 0),
    reconcileIntervalMs: int(env, 'RECONCILE_INTERVAL_MS', 60_000, 0),
    auth: authSection(env),
    webhooks: webhookSection(env, port),
  };
}
