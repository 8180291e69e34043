// Upload inspections are bounded: however many uploads finish at once, at most INSPECT_CONCURRENCY files are read
// and decoded in the inspector thread at a time (each holds its whole model in memory), the others wait in order,
// and a failing inspection gives its slot back. The memory this saves is measured by bench/load.bench.ts.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INSPECT_CONCURRENCY, inspectModel, inspectorLoad } from '../../apps/api/services/inspect-client.js';
import { validModel } from '../reliability/corpus.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oc-inspect-'));
  await writeFile(join(dir, 'ok.onnx'), validModel());
  await writeFile(join(dir, 'bad.onnx'), Buffer.from('definitely not a protobuf model'));
});
after(() => rm(dir, { recursive: true, force: true }));

it(`a burst of 12 inspections runs at most ${INSPECT_CONCURRENCY} at a time, each with its own result`, async () => {
  const files = Array.from({ length: 12 }, (_, i) => join(dir, i % 4 === 3 ? 'bad.onnx' : 'ok.onnx'));
  const calls = files.map((f) => inspectModel(f));
  assert.equal(inspectorLoad().inFlight, INSPECT_CONCURRENCY, 'the burst fills the slots');
  assert.equal(inspectorLoad().waiting, files.length - INSPECT_CONCURRENCY, 'the rest wait');
  const results = await Promise.all(calls);
  results.forEach((r, i) => {
    if (files[i].endsWith('bad.onnx')) assert.equal(r.ok, false, `call ${i}: the bad file is refused`);
    else assert.ok(r.ok && r.value.inputs[0].name === 'x', `call ${i}: ${JSON.stringify(r).slice(0, 200)}`);
  });
  assert.deepEqual(inspectorLoad(), { inFlight: 0, peakInFlight: INSPECT_CONCURRENCY, waiting: 0 });
});
