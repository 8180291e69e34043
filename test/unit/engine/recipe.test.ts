import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRecipe, RecipeError, phaseSparsity } from '../../../packages/engine/recipe.js';

function issues(input: unknown): string[] {
  try {
    parseRecipe(input);
  } catch (e) {
    assert.ok(e instanceof RecipeError);
    return e.issues.map((i) => `${i.path} ${i.message}`);
  }
  assert.fail('expected a RecipeError');
}

test('the issue examples parse and get defaults', () => {
  const s = parseRecipe({
    method: 'sparsity',
    pattern: '2:4',
    criterion: 'wanda',
    exclude: ['*head*'],
    calibration: { samples: 128 },
  });
  assert.equal(s.method, 'sparsity');
  const slim = parseRecipe({
    method: 'slim',
    pattern: '2:4',
    criterion: 'wanda',
    quant: { bits: 4, scheme: 'rtn', groupSize: 32 },
    lowRank: { rankRatio: 0.1, saliency: 'whitened', quantize: false },
    format: 'matmulnbits',
  });
  assert.ok(slim.method === 'slim' && slim.quant?.symmetric === true && slim.refitIterations === 0);
  const q = parseRecipe({
    method: 'quantize',
    quant: { bits: 4, scheme: 'rtn', groupSize: 32, symmetric: true },
    format: 'matmulnbits',
  });
  assert.ok(q.method === 'quantize' && q.accuracyLevel === 'auto');
  const soup = parseRecipe({
    method: 'soup',
    mode: 'greedy',
    maskPolicy: 'reprune',
    pattern: '2:4',
    criterion: 'magnitude',
    metric: 'accuracy',
  });
  assert.ok(soup.method === 'soup' && soup.tie === '>=');
});

test('impossible values are refused with a path', () => {
  assert.match(issues({ method: 'sparsity', pattern: '4:2' })[0], /^\/pattern N must be < M/);
  assert.match(issues({ method: 'sparsity', pattern: '0:4' })[0], /^\/pattern N must be > 0/);
  assert.match(issues({ method: 'sparsity', pattern: '2:40' })[0], /M must be <= 32/);
  assert.match(issues({ method: 'slim', lowRank: { rankRatio: 1.5 } })[0], /^\/lowRank\/rankRatio/);
  assert.match(issues({ method: 'quantize', quant: { bits: 3 } }).join(), /\/quant\/bits/);
  assert.match(issues({ method: 'prune' })[0], /unknown method "prune"/);
  assert.deepEqual(issues({ method: 'sparsity', patern: '2:4' }), ['/patern unknown field']);
  assert.match(issues([1])[0], /JSON object/);
});

test('phase sparsity schedule', () => {
  assert.ok(Math.abs(phaseSparsity(0.9, 2) - (1 - Math.sqrt(0.1))) < 1e-12);
});
