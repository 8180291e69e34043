// Makes the sparse-soup fixtures in test/fixtures/soup/: a dense MLP trained on the spiral task (soup-mlp.ts), its
// 2:4-pruned parent, several fine-tuned variants of the parent with the mask fixed (different data orders, learning
// rates, epochs), each exported as ONNX, plus held-out data (val.npz scores the greedy soup, test.npz is a second,
// untouched split for honest numbers). Deterministic: the same files come out on every run.
//
//   npx tsx test/helpers/soup-fixtures.ts [OUT_DIR]      (default test/fixtures/soup; ~30 s on a busy 2-core box)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeNpz } from '../../packages/engine/data/npz.js';
import {
  accuracy,
  cloneMlp,
  initMlp,
  mlpBytes,
  pruneNM,
  spiralTask,
  train,
  CLASSES,
  INPUT_DIM,
  SPIRAL_WINDING,
  type Task,
} from './soup-mlp.js';

export const SIZES = [INPUT_DIM, 64, 64, CLASSES];

/** Fine-tuning runs from the pruned parent: data-order seed, learning rate, epochs. The last one overshoots. */
export const VARIANTS = [
  { seed: 501, lr: 1e-3, epochs: 5 },
  { seed: 502, lr: 2e-3, epochs: 5 },
  { seed: 503, lr: 1.5e-3, epochs: 6 },
  { seed: 504, lr: 3e-3, epochs: 4 },
  { seed: 505, lr: 1e-3, epochs: 7 },
  { seed: 506, lr: 1.2e-2, epochs: 4 },
];

function taskNpz(task: Task): Uint8Array {
  return encodeNpz({
    input: { dtype: 'float32', dims: [task.n, INPUT_DIM], data: task.x },
    labels: { dtype: 'int64', dims: [task.n], data: BigInt64Array.from(task.y, (v) => BigInt(v)) },
  });
}

export interface FixtureManifest {
  task: string;
  sizes: number[];
  pattern: string;
  splits: { train: number; val: number; test: number };
  dense: { val: number; test: number };
  parent: { val: number; test: number };
  variants: { file: string; seed: number; lr: number; epochs: number; val: number; test: number }[];
}

export function makeSoupFixtures(outDir: string, log: (s: string) => void = () => {}): FixtureManifest {
  mkdirSync(outDir, { recursive: true });
  const trainSet = spiralTask(6000, 1);
  const val = spiralTask(1000, 2);
  const test = spiralTask(2000, 3);
  writeFileSync(join(outDir, 'val.npz'), taskNpz(val));
  writeFileSync(join(outDir, 'test.npz'), taskNpz(test));

  const dense = initMlp(SIZES, 7);
  train(dense, trainSet, { epochs: 20, lr: 2e-3, batch: 32, seed: 100 });
  writeFileSync(join(outDir, 'dense.onnx'), mlpBytes(dense));
  log(`dense: val ${accuracy(dense, val)} test ${accuracy(dense, test)}`);

  const parent = cloneMlp(dense);
  pruneNM(parent, 2, 4);
  writeFileSync(join(outDir, 'parent.onnx'), mlpBytes(parent));
  log(`parent (2:4): val ${accuracy(parent, val)} test ${accuracy(parent, test)}`);

  const variants = VARIANTS.map((v, i) => {
    const m = cloneMlp(parent);
    train(m, trainSet, { epochs: v.epochs, lr: v.lr, batch: 32, seed: v.seed });
    const file = `ft-${i}.onnx`;
    writeFileSync(join(outDir, file), mlpBytes(m));
    const row = { file, ...v, val: accuracy(m, val), test: accuracy(m, test) };
    log(`${file}: lr ${v.lr} epochs ${v.epochs} val ${row.val} test ${row.test}`);
    return row;
  });

  const manifest: FixtureManifest = {
    task: `3-arm spiral in a hidden plane of R^${INPUT_DIM} (winding ${SPIRAL_WINDING}, 3% label noise)`,
    sizes: SIZES,
    pattern: '2:4',
    splits: { train: trainSet.n, val: val.n, test: test.n },
    dense: { val: accuracy(dense, val), test: accuracy(dense, test) },
    parent: { val: accuracy(parent, val), test: accuracy(parent, test) },
    variants,
  };
  writeFileSync(join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = process.argv[2] ?? new URL('../fixtures/soup', import.meta.url).pathname;
  const t0 = performance.now();
  makeSoupFixtures(out, (s) => console.log(s));
  console.log(`wrote ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
