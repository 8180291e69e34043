// The Storage contract and the helpers every backend shares (key checks, the not-found error). A file of its own so
// that the backends (local.ts, s3.ts) do not import storage.ts, which loads them: that was an import circle.
import type { Readable } from 'node:stream';
import type { ExpectedContent } from './verify.js';

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

export interface Storage {
  readonly kind: 'local' | 's3';
  /**
   * Folder for files being received before they are committed with putFile. For the local backend it is inside
   * the storage directory, so committing is an atomic rename on one filesystem.
   */
  readonly stagingDir: string;
  /** Commits a local file under `key`, consuming it (the local file is moved or deleted). Overwrites. */
  putFile(key: string, localPath: string): Promise<void>;
  /** Size of the object, or null when there is none. */
  stat(key: string): Promise<{ sizeBytes: number } | null>;
  /** Streams the object (or a byte range of it). Throws StorageNotFoundError when missing. */
  read(key: string, range?: ByteRange): Promise<Readable>;
  /**
   * Like read, but only once the whole object is known to match `expected` (its sha256 and size recorded at write
   * time): throws StorageIntegrityError otherwise. A check is remembered against the object's identity, so repeated
   * (ranged) reads of an unchanged object hash it once.
   */
  readVerified(key: string, expected: ExpectedContent, range?: ByteRange): Promise<Readable>;
  /** Copies the object to a local file (workers feed the engine local paths). */
  download(key: string, localPath: string): Promise<void>;
  /** Deletes every object whose key starts with `prefix` (a "folder": pass it with a trailing slash). */
  deletePrefix(prefix: string): Promise<void>;
  /** Throws when the backend cannot be reached (readiness). */
  check(): Promise<void>;
}

export class StorageNotFoundError extends Error {
  override readonly name = 'StorageNotFoundError';
  constructor(readonly key: string) {
    super(`no object at ${key}`);
  }
}

/** Keys are built by the service from ids and fixed names; this rejects anything that could escape a folder. */
export function assertSafeKey(key: string): void {
  if (
    key.length === 0 ||
    key.length > 1024 ||
    key.startsWith('/') ||
    key.includes('\\') ||
    key.includes('\0') ||
    key.split('/').some((part) => part === '' || part === '.' || part === '..')
  ) {
    throw new Error(`unsafe storage key: ${JSON.stringify(key)}`);
  }
}
