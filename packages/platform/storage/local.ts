// Storage in a local directory: objects are files at <dir>/<key>; commits are renames from <dir>/.staging, so a
// reader never sees a half-written file, and whatever a crash leaves half-written is in .staging, where the staging
// sweep removes it. A commit is durable when putFile returns: the file's bytes are fsynced before the rename and the
// folder's entry after it (a power cut could otherwise leave a renamed but short file, refused by readVerified but
// lost all the same).
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { access, mkdir, open, rename, rm, stat, constants, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertSafeKey, StorageNotFoundError, type ByteRange, type Storage } from './types.js';
import { sha256Stream, StorageIntegrityError, VerifiedCache, type ExpectedContent } from './verify.js';

/** fsync of a file (its bytes) or a folder (its entries: a rename into it). */
async function fsyncPath(path: string, flags: 'r' | 'r+'): Promise<void> {
  const fh = await open(path, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class LocalStorage implements Storage {
  readonly kind = 'local' as const;
  readonly stagingDir: string;
  readonly verified = new VerifiedCache();

  private constructor(readonly dir: string) {
    this.stagingDir = join(dir, '.staging');
  }

  static async open(dir: string): Promise<LocalStorage> {
    const s = new LocalStorage(dir);
    await mkdir(s.stagingDir, { recursive: true });
    return s;
  }

  private path(key: string): string {
    assertSafeKey(key);
    return join(this.dir, key);
  }

  async putFile(key: string, localPath: string): Promise<void> {
    const dest = this.path(key);
    await mkdir(dirname(dest), { recursive: true });
    try {
      await fsyncPath(localPath, 'r+');
      await rename(localPath, dest);
      await fsyncPath(dirname(dest), 'r');
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    }
    // Another filesystem: copy into staging (same filesystem as the destination), flush, then rename, so the commit
    // stays atomic; a copy that fails (ENOSPC) is removed here, one cut short by a crash is left to the sweep.
    const tmp = join(this.stagingDir, `copy-${randomUUID()}`);
    try {
      await pipeline(createReadStream(localPath), createWriteStream(tmp, { flags: 'wx', flush: true }));
      await rename(tmp, dest);
      await fsyncPath(dirname(dest), 'r');
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    await rm(localPath, { force: true });
  }

  async stat(key: string): Promise<{ sizeBytes: number } | null> {
    try {
      const s = await stat(this.path(key));
      return s.isFile() ? { sizeBytes: s.size } : null;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const path = this.path(key);
    if (!(await this.stat(key))) throw new StorageNotFoundError(key);
    return createReadStream(path, range ? { start: range.start, end: range.end } : {});
  }

  async readVerified(key: string, expected: ExpectedContent, range?: ByteRange): Promise<Readable> {
    const path = this.path(key);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new StorageNotFoundError(key);
      throw e;
    }
    // Checked and served through one open descriptor: a file renamed over the key in between cannot slip in.
    try {
      const s = await fh.stat({ bigint: true });
      if (!s.isFile()) throw new StorageNotFoundError(key);
      if (Number(s.size) !== expected.sizeBytes) {
        throw new StorageIntegrityError(key, expected, { sizeBytes: Number(s.size) }); // truncated: no need to hash
      }
      const identity = `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
      await this.verified.check(key, identity, expected, () =>
        sha256Stream(fh.createReadStream({ start: 0, autoClose: false, highWaterMark: 1 << 20 })),
      );
      return fh.createReadStream(range ? { start: range.start, end: range.end } : { start: 0 });
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async download(key: string, localPath: string): Promise<void> {
    await mkdir(dirname(localPath), { recursive: true });
    await pipeline(await this.read(key), createWriteStream(localPath));
  }

  async deletePrefix(prefix: string): Promise<void> {
    const trimmed = prefix.replace(/\/+$/, '');
    await rm(this.path(trimmed), { recursive: true, force: true });
  }

  async check(): Promise<void> {
    await access(this.stagingDir, constants.W_OK);
  }
}
