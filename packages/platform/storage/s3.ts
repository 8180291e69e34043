// S3-compatible storage (AWS S3, MinIO, Ceph RGW, R2, …) through the AWS SDK v3: the SDK handles request signing,
// retries, multipart uploads of large files (lib-storage Upload) and the credential chain, which a hand-rolled
// client would have to reimplement.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { StorageConfig } from '../config/config.js';
import { assertSafeKey, StorageNotFoundError, type ByteRange, type Storage } from './types.js';
import { sha256Stream, StorageIntegrityError, VerifiedCache, type ExpectedContent } from './verify.js';

type S3Config = Extract<StorageConfig, { kind: 's3' }>;

function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err.name === 'NotFound' || err.name === 'NoSuchKey' || err.$metadata?.httpStatusCode === 404;
}

export class S3Storage implements Storage {
  readonly kind = 's3' as const;
  readonly verified = new VerifiedCache();

  private constructor(
    private readonly client: S3Client,
    private readonly config: S3Config,
    readonly stagingDir: string,
  ) {}

  static async open(config: S3Config, workDir: string): Promise<S3Storage> {
    const client = new S3Client({
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.forcePathStyle,
      credentials:
        config.accessKeyId && config.secretAccessKey
          ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey }
          : undefined,
    });
    const stagingDir = join(workDir, 'staging');
    await mkdir(stagingDir, { recursive: true });
    return new S3Storage(client, config, stagingDir);
  }

  private key(key: string): string {
    assertSafeKey(key);
    return this.config.prefix ? `${this.config.prefix.replace(/\/+$/, '')}/${key}` : key;
  }

  async putFile(key: string, localPath: string): Promise<void> {
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.config.bucket, Key: this.key(key), Body: createReadStream(localPath) },
      partSize: 16 * 1024 * 1024,
      queueSize: 4,
    });
    await upload.done();
    await rm(localPath, { force: true });
  }

  async stat(key: string): Promise<{ sizeBytes: number } | null> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: this.key(key) }));
      return { sizeBytes: Number(head.ContentLength ?? 0) };
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.config.bucket,
          Key: this.key(key),
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      );
      return out.Body as Readable;
    } catch (e) {
      if (isNotFound(e)) throw new StorageNotFoundError(key);
      throw e;
    }
  }

  async readVerified(key: string, expected: ExpectedContent, range?: ByteRange): Promise<Readable> {
    let head;
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: this.key(key) }));
    } catch (e) {
      if (isNotFound(e)) throw new StorageNotFoundError(key);
      throw e;
    }
    const size = Number(head.ContentLength ?? 0);
    if (size !== expected.sizeBytes) throw new StorageIntegrityError(key, expected, { sizeBytes: size });
    const identity = `${head.ETag}:${size}:${head.LastModified?.toISOString()}`;
    // Every GET names the ETag that was checked: an object replaced in between fails (412) instead of being served.
    const get = (r?: ByteRange) =>
      this.client
        .send(
          new GetObjectCommand({
            Bucket: this.config.bucket,
            Key: this.key(key),
            IfMatch: head.ETag,
            Range: r ? `bytes=${r.start}-${r.end}` : undefined,
          }),
        )
        .then((out) => out.Body as Readable);
    await this.verified.check(key, identity, expected, async () => sha256Stream(await get()));
    return get(range);
  }

  async download(key: string, localPath: string): Promise<void> {
    await mkdir(dirname(localPath), { recursive: true });
    await pipeline(await this.read(key), createWriteStream(localPath));
  }

  async deletePrefix(prefix: string): Promise<void> {
    const full = this.key(prefix.replace(/\/+$/, '')) + '/';
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.config.bucket, Prefix: full, ContinuationToken: token }),
      );
      const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length) {
        await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.config.bucket, Delete: { Objects: keys, Quiet: true } }),
        );
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async check(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.config.bucket }));
  }

  close(): void {
    this.client.destroy();
  }
}
