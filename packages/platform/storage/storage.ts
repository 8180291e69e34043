// Where bytes live: models, datasets and job artifacts. Postgres holds the rows; a Storage holds the files, by key
// ("tenants/<tenant>/models/<id>/model.onnx"). Local directory by default, S3-compatible when configured.
import type { StorageConfig } from '../config/config.js';
import type { Storage } from './types.js';

export { StorageIntegrityError, type ExpectedContent } from './verify.js';
export { assertSafeKey, StorageNotFoundError, type ByteRange, type Storage } from './types.js';

export async function createStorage(config: StorageConfig, workDir: string): Promise<Storage> {
  if (config.kind === 'local') {
    const { LocalStorage } = await import('./local.js');
    return LocalStorage.open(config.dir);
  }
  const { S3Storage } = await import('./s3.js');
  return S3Storage.open(config, workDir);
}
