// A start against a migrated database skips the schema engine (one query instead of instantiating its WebAssembly),
// and anything short of "every folder migration applied, same checksum, none failed" still goes to the engine.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { migrate, MIGRATIONS_DIR } from '../../packages/platform/db/migrate.js';
import { migrationsCurrent, type FolderMigration } from '../../packages/platform/db/migrations-current.js';
import { databaseUrl, dropDatabase, uniqueName } from './helpers.js';

const url = databaseUrl(uniqueName('migcurrent'));
const folder: FolderMigration[] = readdirSync(MIGRATIONS_DIR, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => ({ name: d.name, sql: readFileSync(join(MIGRATIONS_DIR, d.name, 'migration.sql'), 'utf8') }))
  .sort((a, b) => a.name.localeCompare(b.name));
let client: pg.Client;

before(async () => {
  assert.ok(folder.length > 0);
  assert.ok((await migrate(url)).length > 0, 'a new database gets every migration');
  client = new pg.Client({ connectionString: url });
  await client.connect();
});
after(async () => {
  await client?.end();
  await dropDatabase(url);
});

it('a migrated database is current; migrate() applies nothing again', async () => {
  assert.equal(await migrationsCurrent(client, folder), true);
  assert.deepEqual(await migrate(url), []);
});

it('a migration not recorded, an edited one, or a failed one is not current (the engine decides)', async () => {
  assert.equal(await migrationsCurrent(client, [...folder, { name: '29990101000000_next', sql: 'SELECT 1;' }]), false);
  const edited = folder.map((m, i) => (i === 0 ? { ...m, sql: m.sql + '\n-- edited' } : m));
  assert.equal(await migrationsCurrent(client, edited), false);

  await client.query(
    `INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count)
     VALUES ('failed-one', 'x', '29990101000000_failed', now(), 0)`,
  );
  try {
    assert.equal(await migrationsCurrent(client, folder), false, 'a failed migration blocks deploys: not current');
  } finally {
    await client.query(`DELETE FROM _prisma_migrations WHERE id = 'failed-one'`);
  }
  assert.equal(await migrationsCurrent(client, folder), true);
});

it('a database without the migrations table is not current', async () => {
  const empty = databaseUrl(uniqueName('migempty'));
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${new URL(empty).pathname.slice(1)}"`);
    const c = new pg.Client({ connectionString: empty });
    await c.connect();
    try {
      assert.equal(await migrationsCurrent(c, folder), false);
    } finally {
      await c.end();
    }
  } finally {
    await admin.end();
    await dropDatabase(empty);
  }
});
