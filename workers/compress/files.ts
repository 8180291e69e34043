// Moving a job's files: inputs from storage to the worker's disk (each checked against the sha256 recorded at
// upload), artifacts (with their sha256) back.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Db } from '../../packages/platform/db/client.js';
import type { ExpectedContent, Storage } from '../../packages/platform/storage/storage.js';
import { InputError, type JobInputs } from '../../packages/engine/job.js';
import type { ExternalDataFile } from '../../packages/platform/db/model-files.js';

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Copies an object to `localPath`, hashing on the way; an object that no longer matches its recorded sha256 fails
 * the job (deterministically: a retry would read the same damaged bytes) instead of feeding the engine bad bytes.
 */
async function downloadVerified(
  storage: Storage,
  key: string,
  expected: ExpectedContent,
  localPath: string,
  what: string,
): Promise<void> {
  await mkdir(dirname(localPath), { recursive: true });
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  await pipeline(await storage.read(key), meter, createWriteStream(localPath, { highWaterMark: 1 << 20 }));
  if (size !== expected.sizeBytes || hash.digest('hex') !== expected.sha256) {
    throw new InputError(
      'input-corrupt',
      `the stored ${what} does not match the sha256 recorded at upload (damaged in storage); upload it again`,
    );
  }
}

interface JobRowForInputs {
  tenantId: string;
  modelId: string;
  ingredientModelIds: string[];
  calibrationDatasetId: string | null;
  evalDatasetId: string | null;
}

/** Local input paths → the names their owners gave them (for messages that must not show worker paths). */
export type InputNames = Map<string, string>;

/** Downloads a model (and its external data files, beside it, under their referenced names) into `dir`. */
async function downloadModel(
  db: Db,
  storage: Storage,
  tenantId: string,
  id: string,
  dir: string,
  names: InputNames,
): Promise<string> {
  const model = await db.model.findFirst({ where: { id, tenantId } });
  if (!model) throw new InputError('model-gone', `model ${id} no longer exists`);
  const path = join(dir, 'model.onnx');
  names.set(path, model.name);
  const expected = { sha256: model.sha256, sizeBytes: Number(model.sizeBytes) };
  await downloadVerified(storage, model.storageKey, expected, path, `model "${model.name}"`);
  for (const f of model.externalData as unknown as ExternalDataFile[]) {
    names.set(join(dir, f.name), f.name);
    await downloadVerified(storage, f.storageKey, f, join(dir, f.name), `external data "${f.name}" of "${model.name}"`);
  }
  return path;
}

async function downloadDataset(
  db: Db,
  storage: Storage,
  tenantId: string,
  id: string,
  dir: string,
  names: InputNames,
): Promise<string> {
  const ds = await db.dataset.findFirst({ where: { id, tenantId } });
  if (!ds) throw new InputError('dataset-gone', `dataset ${id} no longer exists`);
  const path = join(dir, `data.${ds.format}`);
  names.set(path, ds.name);
  const expected = { sha256: ds.sha256, sizeBytes: Number(ds.sizeBytes) };
  await downloadVerified(storage, ds.storageKey, expected, path, `dataset "${ds.name}"`);
  return path;
}

/** Downloads every input of a job; `names` (filled as files arrive) maps each local path to its owner's name. */
export async function downloadInputs(
  db: Db,
  storage: Storage,
  job: JobRowForInputs,
  dir: string,
  outputDir: string,
  names: InputNames = new Map(),
): Promise<JobInputs> {
  const inputs: JobInputs = {
    modelPath: await downloadModel(db, storage, job.tenantId, job.modelId, join(dir, 'model'), names),
    outputDir,
  };
  if (job.ingredientModelIds.length) {
    const extra: string[] = [];
    for (const [i, id] of job.ingredientModelIds.entries()) {
      extra.push(await downloadModel(db, storage, job.tenantId, id, join(dir, `ingredient-${i + 1}`), names));
    }
    inputs.ingredientPaths = [inputs.modelPath, ...extra];
  }
  if (job.calibrationDatasetId) {
    inputs.calibrationPath = await downloadDataset(
      db,
      storage,
      job.tenantId,
      job.calibrationDatasetId,
      join(dir, 'calibration'),
      names,
    );
  }
  if (job.evalDatasetId) {
    inputs.evalPath = await downloadDataset(db, storage, job.tenantId, job.evalDatasetId, join(dir, 'eval'), names);
  }
  return inputs;
}
