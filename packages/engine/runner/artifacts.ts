// Artifacts other than the model: text files a method hands back (MethodResult.files, e.g. a search's pareto.svg),
// and the files of a failed job that still has something to show (InputErrorWithArtifacts: its files and a
// report.json saying why it failed).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { InputErrorWithArtifacts, JobArtifact } from '../job-parts.js';
import { ortVersion } from '../runtime/session.js';
import type { RunState } from './state.js';
import { ENGINE_VERSION } from './version.js';

/** Writes one text artifact into the output folder (plain file names only). */
export async function writeArtifact(dir: string, name: string, content: string): Promise<JobArtifact> {
  if (/[\\/]/.test(name) || name === '' || name === '.' || name === '..') throw new Error(`bad artifact name ${name}`);
  await mkdir(dir, { recursive: true });
  const path = join(dir, name);
  await writeFile(path, content);
  return { name, path, sizeBytes: Buffer.byteLength(content) };
}

/** JSON cannot hold NaN/Infinity: write them as null. */
function jsonNumbers(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}

export async function writeFailureArtifacts(e: InputErrorWithArtifacts, s: RunState): Promise<void> {
  const report = {
    ...e.report,
    method: s.recipe.method,
    recipe: s.recipe,
    engineVersion: ENGINE_VERSION,
    onnxruntime: { version: ortVersion(), executionProvider: s.sessions.executionProvider },
    failed: { code: e.code, message: e.message },
    warnings: [...s.warnings, ...((e.report.warnings as string[] | undefined) ?? [])],
    seconds: (performance.now() - s.started) / 1000,
  };
  const files = [...e.files, { name: 'report.json', content: JSON.stringify(report, jsonNumbers, 2) }];
  e.artifacts = [];
  for (const f of files) e.artifacts.push(await writeArtifact(s.inputs.outputDir, f.name, f.content));
}
