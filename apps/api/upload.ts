// Receives the files of an upload request into one staging folder: multipart (field `file`, plus `externalData`
// files for models that keep weights outside the protobuf) or a raw application/octet-stream body. Every byte is
// streamed to disk through receiveToStaging (sha256 + size limit); nothing is buffered whole.
import { randomUUID } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { receiveToStaging, UploadTooLargeError, type ReceivedFile } from '../../packages/platform/storage/receive.js';
import { ApiError } from './errors.js';

export interface StagedFile extends ReceivedFile {
  /** File name inside the staging folder (the main file is `main`). */
  name: string;
  /** Multipart field it came in (`file` or `externalData`); `file` for raw bodies. */
  field: string;
  /** Name the client gave (multipart filename, or ?name=). */
  clientName: string;
}

export interface StagedUpload {
  dir: string;
  main: StagedFile;
  extra: StagedFile[];
  /** Text fields sent alongside the files (multipart), e.g. name. */
  fields: Record<string, string>;
  cleanup(): Promise<void>;
}

export const UPLOAD_TYPES = ['multipart/form-data', 'application/octet-stream'];

/**
 * Upload routes' onRequest hook: a body of any other type is refused with 415 naming the accepted types before a
 * byte of it is parsed (a large model sent as application/json would otherwise hit the JSON body limit: 413).
 */
export async function requireUploadContentType(request: FastifyRequest): Promise<void> {
  const type = String(request.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();
  if (UPLOAD_TYPES.includes(type)) return;
  throw new ApiError(
    'unsupported-media-type',
    `${type ? `content-type ${type}` : 'no content-type'} is not accepted here: send ${UPLOAD_TYPES.join(' or ')}`,
  );
}

/** A client-given file name reduced to a safe single path component (external data references it by name). */
export function safeFileName(name: string): string | null {
  const base = name.split(/[\\/]/).pop() ?? '';
  if (!/^[A-Za-z0-9._-]{1,200}$/.test(base) || base === '.' || base === '..' || base.startsWith('.')) return null;
  return base;
}

function isStream(body: unknown): body is Readable {
  return typeof (body as Partial<Readable> | null)?.pipe === 'function';
}

export async function receiveUpload(
  request: FastifyRequest,
  opts: {
    stagingDir: string;
    maxBytes: number;
    mainName: string;
    allowExtra: boolean;
    onBytes?: (n: number) => void;
    /** The name a raw (octet-stream) upload was given: the route's ?name=. */
    rawName?: string;
  },
): Promise<StagedUpload> {
  const dir = join(opts.stagingDir, randomUUID());
  await mkdir(dir, { recursive: true });
  const cleanup = () => rm(dir, { recursive: true, force: true });
  const extra: StagedFile[] = [];
  const fields: Record<string, string> = {};
  let main: StagedFile | undefined;

  const take = async (stream: Readable, field: string, clientName: string, truncated: () => boolean) => {
    let received: ReceivedFile;
    try {
      received = await receiveToStaging(stream, { stagingDir: dir, maxBytes: opts.maxBytes, onBytes: opts.onBytes });
    } catch (e) {
      if (e instanceof UploadTooLargeError) {
        throw new ApiError('upload-too-large', `each file may be at most ${opts.maxBytes} bytes`);
      }
      throw e;
    }
    // @fastify/multipart stops at its fileSize limit without an error: check the flag as well.
    if (truncated()) throw new ApiError('upload-too-large', `each file may be at most ${opts.maxBytes} bytes`);
    const name = field === 'file' ? opts.mainName : safeFileName(clientName);
    if (!name || (name === opts.mainName && field !== 'file')) {
      throw new ApiError('validation-failed', `file name ${JSON.stringify(clientName)} is not a plain file name`);
    }
    if (extra.some((f) => f.name === name)) throw new ApiError('validation-failed', `file ${name} sent twice`);
    await rename(received.path, join(dir, name));
    return { ...received, path: join(dir, name), name, field, clientName };
  };

  try {
    if (request.isMultipart()) {
      for await (const part of request.parts()) {
        if (part.type === 'field') {
          if (typeof part.value === 'string') fields[part.fieldname] = part.value;
          continue;
        }
        if (part.fieldname === 'file') {
          if (main) throw new ApiError('validation-failed', 'send one `file` part');
          main = await take(part.file, 'file', part.filename, () => part.file.truncated);
        } else if (part.fieldname === 'externalData' && opts.allowExtra) {
          extra.push(await take(part.file, 'externalData', part.filename, () => part.file.truncated));
        } else {
          part.file.resume();
          throw new ApiError('validation-failed', `unexpected file field ${JSON.stringify(part.fieldname)}`);
        }
      }
    } else {
      const declared = Number(request.headers['content-length']);
      if (Number.isFinite(declared) && declared > opts.maxBytes) {
        throw new ApiError('upload-too-large', `each file may be at most ${opts.maxBytes} bytes`);
      }
      // Only the octet-stream parser hands the body over as a stream; a JSON (or other parsed) body is refused.
      const body = request.body;
      if (!isStream(body)) throw new ApiError('unsupported-media-type', `send ${UPLOAD_TYPES.join(' or ')}`);
      main = await take(body, 'file', opts.rawName ?? opts.mainName, () => false);
    }
    if (!main) throw new ApiError('validation-failed', 'no `file` part in the upload');
    if (main.sizeBytes === 0) throw new ApiError('validation-failed', 'the file is empty');
    return { dir, main, extra, fields, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
