// Receives an upload: streams it to a staging file while hashing (sha256) and counting, stops at the size limit,
// never holds more than one chunk in memory. The caller commits the file with Storage.putFile (atomic rename).
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface ReceivedFile {
  path: string;
  sha256: string;
  sizeBytes: number;
}

export class UploadTooLargeError extends Error {
  override readonly name = 'UploadTooLargeError';
  constructor(readonly limitBytes: number) {
    super(`upload exceeds the limit of ${limitBytes} bytes`);
  }
}

export async function receiveToStaging(
  source: Readable,
  opts: { stagingDir: string; maxBytes: number; onBytes?: (n: number) => void },
): Promise<ReceivedFile> {
  const path = join(opts.stagingDir, `upload-${randomUUID()}`);
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > opts.maxBytes) {
        done(new UploadTooLargeError(opts.maxBytes));
        return;
      }
      hash.update(chunk);
      opts.onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
  try {
    await pipeline(source, meter, createWriteStream(path, { highWaterMark: 1 << 20 }));
  } catch (e) {
    await rm(path, { force: true });
    throw e;
  }
  return { path, sha256: hash.digest('hex'), sizeBytes: size };
}
