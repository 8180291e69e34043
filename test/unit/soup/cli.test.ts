// `onnx-compress soup` as a user runs it (bin → tsx → main.ts): greedy on the fixtures with a report, a reprune + next
// phase recipe, and errors as one `error:` line with a non-zero exit code.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { INGREDIENTS, accuracyOf, fixture, scratchDir } from '../../helpers/soup-harness.js';
import { initMlp, mlpBytes } from '../../helpers/soup-mlp.js';

const BIN = join(process.cwd(), 'bin', 'onnx-compress.mjs');
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let dir: string;
let cleanup: () => Promise<void>;
before(async () => ({ dir, cleanup } = await scratchDir()));
after(() => cleanup());

function recipe(name: string, r: object): string {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(r));
  return p;
}

test('soup greedy: prints ingredients, greedy steps, uniform vs greedy; writes the model and the report', async () => {
  const out = join(dir, 'SOUP.onnx');
  const rep = join(dir, 'REPORT.json');
  const r = cli(
    'soup',
    ...INGREDIENTS,
    '--recipe',
    recipe('greedy.json', { method: 'soup', mode: 'greedy', metric: 'accuracy' }),
    '--eval',
    fixture('val.npz'),
    '-o',
    out,
    '--report',
    rep,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /mask check \(require-shared\): all 6 ingredients share one zero pattern/);
  assert.match(r.stdout, /greedy \(tie >=\), best first:\n {2}\+ 6 /);
  assert.match(r.stdout, /uniform soup \(all 6\): accuracy 0\.\d{4}, sparsity 50\.00%/);
  assert.match(r.stdout, /greedy soup \([\d, ]+\): accuracy 0\.\d{4}, sparsity 50\.00% \(mask 50\.00%, respected\)/);
  const report = JSON.parse(readFileSync(rep, 'utf8'));
  assert.equal(report.method, 'soup');
  assert.equal(report.recipe.mode, 'greedy');
  const soup = report.soup;
  const best = Math.max(...soup.ingredients.map((i: { metric: number }) => i.metric));
  assert.ok(soup.soup.metric >= best);
  // the runner's own evaluation of the written soup agrees with the soup's metric
  assert.equal(report.quality.compressed.accuracy, soup.soup.metric);
  assert.equal(await accuracyOf(out, fixture('val.npz'), dir), soup.soup.metric);
  assert.deepEqual(
    report.layers.map((l: { name: string; sparsity?: number; skipped?: string }) => [l.name, l.sparsity ?? l.skipped]),
    [
      ['fc1.weight', 0.5],
      ['fc2.weight', 0.5],
      ['fc3.weight', 'too small (192 elements < 1024)'],
    ],
  );
});

test('soup reprune 2:4 with a next phase: the output is the pruned parent of the next round', () => {
  const out = join(dir, 'next.onnx');
  const r = cli(
    'soup',
    fixture('dense.onnx'),
    INGREDIENTS[0],
    INGREDIENTS[1],
    '--recipe',
    recipe('reprune.json', {
      method: 'soup',
      mode: 'greedy',
      maskPolicy: 'reprune',
      pattern: '2:4',
      criterion: 'magnitude',
      metric: 'accuracy',
      nextPhase: { goal: 0.875, phases: 3 },
    }),
    '--eval',
    fixture('val.npz'),
    '-o',
    out,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /mask check \(reprune\): 3 of 3 weights have different zero patterns.*each candidate soup re-pruned \(2:4\) from its own average/,
  );
  // the greedy members' own zeros inside the 2:4 mask add a little: ≥ 50% before, half of the rest pruned after
  const m =
    /next phase: global magnitude, p_phase = 0\.5000 of the remaining weights: sparsity ([\d.]+)% → ([\d.]+)%/.exec(
      r.stdout,
    );
  assert.ok(m, r.stdout);
  const [before, afterPhase] = [Number(m[1]) / 100, Number(m[2]) / 100];
  assert.ok(before >= 0.5);
  assert.ok(Math.abs(afterPhase - (1 - (1 - before) / 2)) < 2e-4);
});

test('errors: a mismatching ingredient, a missing file, a non-soup recipe → one error line, exit 1', () => {
  const narrow = join(dir, 'narrow.onnx');
  writeFileSync(narrow, mlpBytes(initMlp([16, 32, 64, 3], 1)));
  const soupRecipe = recipe('u.json', { method: 'soup', mode: 'uniform' });
  const bad = cli('soup', INGREDIENTS[0], narrow, '--recipe', soupRecipe, '-o', join(dir, 'x.onnx'));
  assert.equal(bad.code, 1);
  assert.match(
    bad.stderr,
    /^error: ingredient 2 \(.*narrow\.onnx\) is not the same network as ingredient 1 .*shape \[16, 64\] vs \[16, 32\]/m,
  );
  const missing = cli(
    'soup',
    INGREDIENTS[0],
    join(dir, 'nope.onnx'),
    '--recipe',
    soupRecipe,
    '-o',
    join(dir, 'x.onnx'),
  );
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /error: .*nope\.onnx/);
  const other = recipe('s.json', { method: 'sparsity', pattern: '2:4' });
  const wrong = cli('soup', ...INGREDIENTS.slice(0, 2), '--recipe', other, '-o', join(dir, 'x.onnx'));
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /error: invalid recipe: \/method: "soup" needs a soup recipe/);
  const greedyNoEval = recipe('g.json', { method: 'soup' });
  const noEval = cli('soup', ...INGREDIENTS.slice(0, 2), '--recipe', greedyNoEval, '-o', join(dir, 'x.onnx'));
  assert.equal(noEval.code, 1);
  assert.match(noEval.stderr, /error: method "soup" needs labels in the evaluation data/);
});
