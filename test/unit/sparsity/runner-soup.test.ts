// runRecipe hands multi-model methods what they declared: ingredient loaders and a held-out scorer (greedy soups
// pick ingredients by held-out accuracy through it). Uses the soup fixtures committed under test/fixtures/soup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, tempDir } from './helpers.js';

const fx = (name: string) => fileURLToPath(new URL(`../../fixtures/soup/${name}`, import.meta.url));
const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

test(
  'a greedy soup through runRecipe gets ingredients and a held-out scorer',
  { skip: !existsSync(fx('parent.onnx')) },
  async () => {
    const heldOut = existsSync(fx('val.npz')) ? fx('val.npz') : fx('test.npz');
    const ingredients = [0, 1, 2, 3].map((i) => fx(`ft-${i}.onnx`));
    const r = await run({ method: 'soup', mode: 'greedy', metric: 'accuracy' }, fx('parent.onnx'), join(dir, 'soup'), {
      evalPath: heldOut,
      ingredientPaths: ingredients,
    });
    const soup = r.report.soup as {
      metric: { evaluated: boolean };
      ingredients: { metric: number }[];
      greedy: { steps: { metric: number; accepted: boolean }[] };
    };
    assert.equal(soup.metric.evaluated, true);
    for (const i of soup.ingredients) assert.ok(i.metric > 0 && i.metric <= 1, 'every ingredient was scored');
    assert.equal(soup.greedy.steps.length, 4);
    const q = r.report.quality as {
      evaluated: boolean;
      dense?: { accuracy: number };
      compressed?: { accuracy: number };
    };
    assert.equal(q.evaluated, true);
    assert.equal(typeof q.compressed?.accuracy, 'number');
  },
);
