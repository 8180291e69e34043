// Lint: typescript-eslint's recommended rules over the sources; generated protobuf code is excluded.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** The engine's public entries (packages/engine/index.ts says why there are light ones beside it). */
const ENGINE_ENTRIES = ['index', 'job', 'onnx/index', 'data/index', 'runtime/index'];
const ENGINE_ENTRY_MESSAGE =
  'import the engine through packages/engine/index.js, or a light entry: job.js, onnx/index.js, data/index.js, runtime/index.js';

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      'dist/',
      'dist-bench/', // bench/gpu.sh --build's bundle (git-ignored too)
      'packages/engine/onnx/gen/',
      'prisma/generated/',
      'bench/out/',
      'test/.artifacts/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        performance: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        fetch: 'readonly',
        structuredClone: 'readonly',
        queueMicrotask: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // Issue 16: no function over 150 lines in the service's code (a stage, not a pipeline). Every line counts,
    // comments and blank lines included: a function is read whole, and comments cannot hide its length.
    files: ['packages/**/*.ts', 'apps/**/*.ts', 'workers/**/*.ts'],
    rules: { 'max-lines-per-function': ['error', { max: 150, IIFEs: true }] },
  },
  {
    // Issue 16.4: apps/, workers/ and packages/platform/ use the engine through its public entries only:
    // packages/engine/index.ts (the whole surface) or a light entry for start-up paths (index.ts says why).
    files: ['apps/**/*.ts', 'workers/**/*.ts', 'packages/platform/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/packages/engine/**/*.js', ...ENGINE_ENTRIES.map((e) => `!**/packages/engine/${e}.js`)],
              message: ENGINE_ENTRY_MESSAGE,
            },
          ],
        },
      ],
      'no-restricted-syntax': [
        'error',
        {
          // The same rule for import('…'), which no-restricted-imports does not look at.
          selector: `ImportExpression[source.value=/packages\\/engine\\/(?!(${ENGINE_ENTRIES.join('|').replace(/\//g, '\\/')})\\.js$)/]`,
          message: ENGINE_ENTRY_MESSAGE,
        },
      ],
    },
  },
);
