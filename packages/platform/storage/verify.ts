// Integrity of stored objects on read: a reader names the sha256 and size recorded when the object was written, and
// gets the bytes only if they still match. Hashing a large object on every request (or every Range request of a
// resumed download) would be wasteful, so a successful check is remembered against the object's identity (local:
// device + inode + size + mtime; S3: ETag + size + Last-Modified) and redone when that identity changes, or after a
// while, since bit rot on a disk changes bytes without changing the mtime.
import { createHash } from 'node:crypto';

export interface ExpectedContent {
  sha256: string;
  sizeBytes: number;
}

/** The stored bytes are not the ones recorded at write time (corruption, truncation, tampering). */
export class StorageIntegrityError extends Error {
  override readonly name = 'StorageIntegrityError';
  constructor(
    readonly key: string,
    readonly expected: ExpectedContent,
    readonly actual: { sha256?: string; sizeBytes: number },
  ) {
    super(
      actual.sha256
        ? `object ${key} has sha256 ${actual.sha256}, expected ${expected.sha256}`
        : `object ${key} has ${actual.sizeBytes} bytes, expected ${expected.sizeBytes}`,
    );
  }
}

export async function sha256Stream(stream: AsyncIterable<unknown>): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}

export interface VerifiedCacheOptions {
  /** Objects whose successful check is remembered. @defaultValue 10000 */
  maxEntries?: number;
  /** A remembered check is redone after this long even if the identity is unchanged. @defaultValue 1 hour */
  reverifyAfterMs?: number;
}

/** Remembers which (key, identity) pairs were verified, and shares one check between concurrent readers. */
export class VerifiedCache {
  private readonly verified = new Map<string, { identity: string; at: number }>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly maxEntries: number;
  private readonly reverifyAfterMs: number;
  /** Full hashes computed (observable by tests: a second read of an unchanged object costs none). */
  hashes = 0;

  constructor(opts: VerifiedCacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.reverifyAfterMs = opts.reverifyAfterMs ?? 60 * 60 * 1000;
  }

  /**
   * Resolves when the object at `key`, in the state named by `identity`, is known to match `expected`; throws
   * StorageIntegrityError when it does not. `hash` reads the whole object (only called when needed).
   */
  async check(
    key: string,
    identity: string,
    expected: ExpectedContent,
    hash: () => Promise<{ sha256: string; sizeBytes: number }>,
  ): Promise<void> {
    const id = `${identity}|${expected.sha256}|${expected.sizeBytes}`;
    const known = this.verified.get(key);
    if (known && known.identity === id && Date.now() - known.at < this.reverifyAfterMs) return;
    const flightKey = `${key}\0${id}`;
    let flight = this.inFlight.get(flightKey);
    if (!flight) {
      flight = (async () => {
        this.hashes++;
        const actual = await hash();
        if (actual.sizeBytes !== expected.sizeBytes || actual.sha256 !== expected.sha256) {
          this.verified.delete(key);
          throw new StorageIntegrityError(key, expected, actual);
        }
        this.verified.delete(key); // re-insert at the end: Map order is the eviction order
        this.verified.set(key, { identity: id, at: Date.now() });
        while (this.verified.size > this.maxEntries) this.verified.delete(this.verified.keys().next().value!);
      })().finally(() => this.inFlight.delete(flightKey));
      this.inFlight.set(flightKey, flight);
    }
    await flight;
  }

  forget(key: string): void {
    this.verified.delete(key);
  }
}
