// scripts/import-cycles.mjs guards "import circles 0" and the layer order (engine < platform < workers < apps) in
// `npm run lint`: on a made-up tree it must find a circle made only of type imports, an upward import, a dynamic
// import, and leave generated code alone; the repository itself must pass.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const SCRIPT = new URL('../../../scripts/import-cycles.mjs', import.meta.url).pathname;
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oc-imports-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function tree(name: string, files: Record<string, string>): Promise<string> {
  const root = join(dir, name);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return root;
}

function check(root?: string) {
  const r = spawnSync(process.execPath, [SCRIPT, ...(root ? [root] : [])], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout };
}

it('a clean tree passes: downward imports only, a circle inside generated code is not ours', async () => {
  const root = await tree('clean', {
    'packages/engine/a.ts': 'export const a = 1;\n',
    'packages/platform/b.ts': "import { a } from '../engine/a.js';\nexport const b = a;\n",
    'apps/api/c.ts': "import { b } from '../../packages/platform/b.js';\nexport const c = b;\n",
    'prisma/generated/x.ts': "import { y } from './y.js';\nexport const x = y;\n",
    'prisma/generated/y.ts': "import type { x } from './x.js';\nexport const y = 1 as typeof x;\n",
  });
  const r = check(root);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /import circles: 0\nupward imports: 0/);
});

it('a circle of type-only imports and a dynamic one are both found', async () => {
  const root = await tree('circle', {
    'packages/engine/job.ts': "import type { Recipe } from './recipe.js';\nexport type Job = { r: Recipe };\n",
    'packages/engine/recipe.ts': "import type { Job } from './job.js';\nexport type Recipe = { j?: Job };\n",
    'packages/engine/lazy.ts': "export const load = () => import('./back.js');\n",
    'packages/engine/back.ts': "import { load } from './lazy.js';\nexport const again = load;\n",
  });
  const r = check(root);
  assert.equal(r.status, 1);
  assert.match(r.out, /circle of 2 files:\n {2}packages\/engine\/job\.ts\n {2}packages\/engine\/recipe\.ts/);
  assert.match(r.out, /packages\/engine\/back\.ts\n {2}packages\/engine\/lazy\.ts/);
  assert.match(r.out, /import circles: 2/);
});

it('an import from a lower layer up to a higher one fails, naming both files', async () => {
  const root = await tree('upward', {
    'apps/api/models.ts': 'export interface ExternalDataFile { name: string }\n',
    'workers/compress/files.ts':
      "import type { ExternalDataFile } from '../../apps/api/models.js';\nexport type F = ExternalDataFile;\n",
  });
  const r = check(root);
  assert.equal(r.status, 1);
  assert.match(r.out, /upward import: workers\/compress\/files\.ts -> apps\/api\/models\.ts \(workers\/ < apps\/\)/);
  assert.match(r.out, /upward imports: 1/);
});

it('the repository itself has no circle and no upward import', () => {
  const r = check();
  assert.equal(r.status, 0, r.out);
});
