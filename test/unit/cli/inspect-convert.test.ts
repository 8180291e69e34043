// The CLI end to end as a user runs it (bin → tsx → main.ts): inspect (text and JSON) and convert both ways, with
// onnxruntime giving identical outputs, and errors as one `error:` line with exit codes 1 / 2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { saveModel } from '../../../packages/engine/onnx/model.js';
import { PPOCR_DET, PPOCR_REC, loopScanModel, randomFloats, removeDir, tempDir } from '../../helpers/onnx-fixtures.js';
import { runOrt, sameArrays } from '../../helpers/ort.js';

const BIN = path.join(process.cwd(), 'bin', 'onnx-compress.mjs');
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('inspect --json on PP-OCRv4 det: IR, opsets, I/O, parameters and the Constant-node weights', () => {
  const r = cli('inspect', PPOCR_DET, '--json');
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.irVersion, 8);
  assert.deepEqual(j.opsets, [{ domain: 'ai.onnx', version: 11 }]);
  assert.deepEqual(
    j.inputs.map((i: { name: string; dtype: string }) => [i.name, i.dtype]),
    [['x', 'float32']],
  );
  assert.equal(j.inputs[0].shape.length, 4);
  assert.equal(j.outputs.length, 1);
  assert.ok(j.parameters > 900_000, `parameters ${j.parameters}`);
  assert.equal(j.ops.Conv, 62);
  assert.equal(j.weights.length, 62);
  for (const w of j.weights) {
    for (const k of ['name', 'op', 'node', 'shape', 'dtype', 'kAxis', 'location', 'compressible', 'reason'])
      assert.ok(k in w, k);
    assert.equal(w.location, 'constant');
    assert.equal(w.compressible, w.reason === null);
  }
});

test('inspect (text) lists weights with reasons; subgraph weights carry their graph path', async () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'loop.onnx');
    await saveModel(loopScanModel(), file);
    const r = cli('inspect', file);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /weights\s+2 found, 0 compressible/);
    assert.match(r.stdout, /Loop_0\/body\/Wloop\s+MatMul/);
    assert.match(r.stdout, /no: too small \(64 elements < 1024\)/);
  } finally {
    removeDir(dir);
  }
});

test('convert PP-OCRv4 rec to external data and back: ORT outputs identical', async () => {
  const dir = tempDir();
  try {
    const ext = path.join(dir, 'rec-ext.onnx');
    const back = path.join(dir, 'rec-inline.onnx');
    let r = cli('convert', PPOCR_REC, '-o', ext, '--external-data');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /rec-ext\.onnx\.data/);
    assert.ok(fs.statSync(ext).size < 200_000 && fs.statSync(ext + '.data').size > 10_000_000);
    r = cli('convert', ext, '-o', back, '--inline');
    assert.equal(r.code, 0, r.stderr);
    const feeds = { x: { type: 'float32' as const, data: randomFloats(3 * 48 * 200, 3), dims: [1, 3, 48, 200] } };
    const a = await runOrt(PPOCR_REC, feeds);
    for (const f of [ext, back]) {
      const b = await runOrt(f, feeds);
      for (const k of Object.keys(a)) assert.ok(sameArrays(a[k], b[k]), `${path.basename(f)}: ${k}`);
    }
  } finally {
    removeDir(dir);
  }
});

test('errors: one line on stderr, exit 1 for bad input, 2 for usage', () => {
  const dir = tempDir();
  try {
    const junk = path.join(dir, 'junk.onnx');
    fs.writeFileSync(junk, Buffer.from(randomFloats(4096, 9).buffer));
    let r = cli('inspect', junk);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: .+\n$/);
    fs.writeFileSync(junk, fs.readFileSync(PPOCR_DET).subarray(0, 100_000));
    r = cli('convert', junk, '-o', path.join(dir, 'o.onnx'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: the file ends in the middle of a message/);
    assert.equal(fs.readdirSync(dir).length, 1, 'nothing written on failure');
    r = cli('inspect', path.join(dir, 'missing.onnx'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: cannot read .*: no such file\n$/);
    assert.equal(cli('inspect').code, 2);
    assert.equal(cli('convert', PPOCR_DET).code, 2); // -o is required
    assert.equal(cli('convert', PPOCR_DET, '-o', path.join(dir, 'x.onnx'), '--inline', '--external-data').code, 2);
    assert.equal(cli('nonsense').code, 2);
    assert.equal(cli('--help').code, 0);
  } finally {
    removeDir(dir);
  }
});
