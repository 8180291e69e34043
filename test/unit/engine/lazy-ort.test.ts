// The API imports the recipe schema, and the schema is built from every method file (methods/registry.ts), so an
// engine module that imported onnxruntime-node's value at top level made `onnx-compress serve` load ONNX Runtime's
// native binding at start-up (issue 15: serve → first /healthz ≤ 2 s). runtime/ort.ts loads it on first use; this
// checks, in a fresh process, that importing the API app leaves onnxruntime-node out of the module cache, and (the
// control, so the check can fail) that the first ort() call puts it there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

const PROBE = `
import { createRequire } from 'node:module';
const req = createRequire(process.cwd() + '/package.json');
const loaded = () => Object.keys(req.cache).some((k) => k.includes('/onnxruntime-node/'));
await import('./apps/api/app.js');
const afterApi = loaded();
const { ort } = await import('./packages/engine/runtime/ort.js');
const version = ort().env.versions?.common;
console.log(JSON.stringify({ afterApi, afterOrt: loaded(), version }));
`;

test('importing the API app does not load onnxruntime-node; the first ort() call does', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', PROBE], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, NODE_ENV: 'test' },
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
    afterApi: boolean;
    afterOrt: boolean;
    version?: string;
  };
  assert.equal(out.afterApi, false, 'onnxruntime-node was loaded by importing apps/api/app.js');
  assert.equal(out.afterOrt, true, 'ort() did not load onnxruntime-node');
  assert.match(out.version ?? '', /^\d+\.\d+/);
});
