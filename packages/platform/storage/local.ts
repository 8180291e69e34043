// Storage in a local directory: objects are files at <dir>/<key>; commits are renames from <dir>/.staging, so a
// reader never sees a half-written file.
import { createReadStream, createWriteStream } from 'node:fs';
import { access, mkdir, rename, rm, stat, constants } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertSafeKey, StorageNotFoundError, type ByteRange, type Storage } from './storage.js';

export class LocalStorage implements Storage {
  readonly kind = 'local' as const;
  readonly stagingDir: string;

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
      await rename(localPath, dest);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
      // Another filesystem: copy beside the destination, then rename, so the commit stays atomic.
      const tmp = `${dest}.partial-${process.pid}-${Date.now()}`;
      await pipeline(createReadStream(localPath), createWriteStream(tmp));
      await rename(tmp, dest);
      await rm(localPath, { force: true });
    }
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
