// The committed openapi/openapi.json must equal what the routes generate (regenerate with `npm run openapi`).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { OPENAPI_PATH, openApiDocument, serialise } from '../../openapi/document.js';

it('openapi/openapi.json matches the route schemas (run `npm run openapi` after changing a route)', async () => {
  const generated = await openApiDocument();
  assert.equal(generated.openapi, '3.1.0');
  const committed = await readFile(OPENAPI_PATH, 'utf8');
  assert.deepEqual(JSON.parse(committed), JSON.parse(serialise(generated)));
  const paths = Object.keys(generated.paths as object);
  for (const p of [
    '/v1/models',
    '/v1/datasets',
    '/v1/jobs',
    '/v1/jobs/{id}/cancel',
    '/v1/jobs/{id}/artifacts/{name}',
  ]) {
    assert.ok(paths.includes(p), `${p} documented`);
  }
});
