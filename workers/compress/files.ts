// Moving a job's files: inputs from storage to the worker's disk, artifacts (with their sha256) back.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Db } from '../../packages/platform/db/client.js';
import type { Storage } from '../../packages/platform/storage/storage.js';
import { InputError, type JobInputs } from '../../packages/engine/job.js';
import type { ExternalDataFile } from '../../apps/api/services/models.js';

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

interface JobRowForInputs {
  tenantId: string;
  modelId: string;
  ingredientModelIds: string[];
  calibrationDatasetId: string | null;
  evalDatasetId: string | null;
}

/** Downloads a model (and its external data files, beside it, under their referenced names) into `dir`. */
async function downloadModel(db: Db, storage: Storage, tenantId: string, id: string, dir: string): Promise<string> {
  const model = await db.model.findFirst({ where: { id, tenantId } });
  if (!model) throw new InputError('model-gone', `model ${id} no longer exists`);
  const path = join(dir, 'model.onnx');
  await storage.download(model.storageKey, path);
  for (const f of model.externalData as unknown as ExternalDataFile[]) {
    await storage.download(f.storageKey, join(dir, f.name));
  }
  return path;
}

async function downloadDataset(db: Db, storage: Storage, tenantId: string, id: string, dir: string): Promise<string> {
  const ds = await db.dataset.findFirst({ where: { id, tenantId } });
  if (!ds) throw new InputError('dataset-gone', `dataset ${id} no longer exists`);
  const path = join(dir, `data.${ds.format}`);
  await storage.download(ds.storageKey, path);
  return path;
}

export async function downloadInputs(
  db: Db,
  storage: Storage,
  job: JobRowForInputs,
  dir: string,
  outputDir: string,
): Promise<JobInputs> {
  const inputs: JobInputs = {
    modelPath: await downloadModel(db, storage, job.tenantId, job.modelId, join(dir, 'model')),
    outputDir,
  };
  if (job.ingredientModelIds.length) {
    const extra: string[] = [];
    for (const [i, id] of job.ingredientModelIds.entries()) {
      extra.push(await downloadModel(db, storage, job.tenantId, id, join(dir, `ingredient-${i + 1}`)));
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
    );
  }
  if (job.evalDatasetId) {
    inputs.evalPath = await downloadDataset(db, storage, job.tenantId, job.evalDatasetId, join(dir, 'eval'));
  }
  return inputs;
}
