import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  METHOD_NAMES,
  parseRecipe,
  RecipeError,
  RecipeSchema,
  phaseSparsity,
} from '../../../packages/engine/recipe.js';
import { allMethods, findMethod, minModels } from '../../../packages/engine/methods/registry.js';

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

test('the recipe union is built from the methods: each method file carries its schema, defaults, rules and declarations', () => {
  assert.deepEqual(
    allMethods().map((m) => m.name),
    METHOD_NAMES,
  );
  const branches = (
    RecipeSchema as unknown as { anyOf: { title: string; properties: { method: { const: string } } }[] }
  ).anyOf;
  assert.deepEqual(
    branches.map((b) => b.properties.method.const),
    METHOD_NAMES,
    'one branch per registered method, in registry order',
  );
  for (const m of allMethods()) {
    assert.equal(
      branches.find((b) => b.properties.method.const === m.name),
      m.schema,
      `${m.name}: its own schema`,
    );
    // Its example parses, and parsing fills the method's defaults and applies its rules.
    const parsed = parseRecipe(m.example);
    assert.equal(parsed.method, m.name);
    assert.deepEqual(m.withDefaults(structuredClone(parsed)), parsed, `${m.name}: defaults are idempotent`);
    assert.deepEqual(m.rules?.(parsed) ?? [], []);
  }
  assert.equal(minModels('soup'), 2);
  assert.equal(minModels('sparsity'), 1);
  assert.equal(findMethod('nope'), undefined);
  assert.equal(findMethod('toString'), undefined, 'only registered names, not object keys');
});
