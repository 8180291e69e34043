// Migrations through the wasm schema engine: database created when missing, applied once (recorded in
// _prisma_migrations like `prisma migrate deploy`), concurrent starts safe, and prisma/migrations in step with
// schema.prisma (a schema change without a migration fails here: `npm run db:migration -- <name>`).
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { migrate, pendingSchemaChanges } from '../../packages/platform/db/migrate.js';
import { databaseUrl, dropDatabase, uniqueName } from './helpers.js';

const url = databaseUrl(uniqueName('migrate'));
after(() => dropDatabase(url));

it('creates the database and applies every migration once, even from processes starting together', async () => {
  const [a, b] = await Promise.all([migrate(url), migrate(url)]);
  const applied = [...a, ...b];
  assert.ok(applied.length >= 1);
  assert.equal(new Set(applied).size, applied.length, 'no migration applied twice');
  assert.deepEqual(await migrate(url), []);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const rows = await client.query('SELECT migration_name, finished_at FROM _prisma_migrations ORDER BY 1');
    assert.deepEqual(
      rows.rows.map((r) => r.migration_name),
      [...applied].sort(),
    );
    assert.ok(rows.rows.every((r) => r.finished_at !== null));
    const tables = await client.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`);
    for (const t of [
      'tenants',
      'api_keys',
      'models',
      'datasets',
      'jobs',
      'artifacts',
      'job_layer_metrics',
      'webhook_deliveries',
    ]) {
      assert.ok(
        tables.rows.some((r) => r.tablename === t),
        `table ${t}`,
      );
    }
  } finally {
    await client.end();
  }
});

it('prisma/migrations produce exactly schema.prisma (no drift)', async () => {
  assert.equal(await pendingSchemaChanges(url), '');
});
