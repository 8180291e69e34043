// Migrations: prisma/migrations in Prisma's folder format, applied through the wasm schema engine (see
// schema-engine.ts), so `prisma migrate deploy` keeps working unchanged where the native engine can be installed.
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { migrationsCurrent } from './migrations-current.js';
import { adminQuery, connectionParts, openSchemaEngine } from './schema-engine.js';

// The repository root: three folders up from the source, four from its compiled copy under dist/.
const root = new URL(import.meta.url.endsWith('.js') ? '../../../../' : '../../../', import.meta.url).pathname;
export const SCHEMA_PATH = join(root, 'prisma', 'schema.prisma');
export const MIGRATIONS_DIR = join(root, 'prisma', 'migrations');
const NO_FILTERS = { externalTables: [], externalEnums: [] };
/** Advisory-lock key held while migrating ("onnxcomp" in ASCII, truncated to fit a bigint). */
const MIGRATION_LOCK_KEY = '7957969386707469680';

/** Creates the database named in `databaseUrl` when it does not exist (the server must let the user create it). */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const parts = connectionParts(databaseUrl);
  const found = await adminQuery(parts, 'SELECT 1 FROM pg_database WHERE datname = $1', [parts.database]);
  if (found.rowCount) return false;
  try {
    await adminQuery(parts, `CREATE DATABASE "${parts.database.replace(/"/g, '""')}"`);
  } catch (e) {
    // Another process (an API and a worker starting together) may have won the race: Postgres reports it as
    // "already exists" (42P04) or, when both inserts reach pg_database at once, as a unique violation (23505).
    const code = (e as { code?: string }).code;
    if (code !== '42P04' && code !== '23505') throw e;
  }
  return true;
}

async function migrationList(dir = MIGRATIONS_DIR) {
  const names = existsSync(dir)
    ? (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name)
    : [];
  names.sort();
  const lockPath = join(dir, 'migration_lock.toml');
  return {
    baseDir: dir,
    lockfile: {
      path: 'migration_lock.toml',
      content: existsSync(lockPath) ? await readFile(lockPath, 'utf8') : null,
    },
    shadowDbInitScript: '',
    migrationDirectories: await Promise.all(
      names.map(async (name) => ({
        path: name,
        migrationFile: {
          path: 'migration.sql',
          content: { tag: 'ok' as const, value: await readFile(join(dir, name, 'migration.sql'), 'utf8') },
        },
      })),
    ),
  };
}

async function schemaFile() {
  return { path: SCHEMA_PATH, content: await readFile(SCHEMA_PATH, 'utf8') };
}

/**
 * Creates the database if missing and applies every pending migration (recorded in `_prisma_migrations`, as
 * `prisma migrate deploy` does). Postgres advisory lock: processes starting together apply them once.
 * Returns the names applied now.
 */
export async function migrate(databaseUrl: string): Promise<string[]> {
  await ensureDatabase(databaseUrl);
  const lock = new pg.Client(connectionParts(databaseUrl));
  await lock.connect();
  try {
    await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    const migrationsList = await migrationList();
    const folder = migrationsList.migrationDirectories.map((d) => ({
      name: d.path,
      sql: d.migrationFile.content.value,
    }));
    if (await migrationsCurrent(lock, folder)) return []; // nothing to apply: the schema engine is not loaded
    const { engine, close } = await openSchemaEngine(databaseUrl, await schemaFile());
    try {
      const out = await engine.applyMigrations({ migrationsList, filters: NO_FILTERS });
      return out.appliedMigrationNames;
    } finally {
      await close(); // ends the session holding Prisma's advisory lock
    }
  } finally {
    await lock.end(); // ending the session releases the lock
  }
}

/**
 * SQL that takes the database state described by the migrations folder to schema.prisma (empty when they agree).
 * Replays the migrations in a throwaway shadow database on the same server.
 */
export async function pendingSchemaChanges(databaseUrl: string): Promise<string> {
  await ensureDatabase(databaseUrl);
  const schema = await schemaFile();
  const { engine, close } = await openSchemaEngine(databaseUrl, schema);
  try {
    const list = await migrationList();
    const from = list.migrationDirectories.length ? { tag: 'migrations' as const, ...list } : { tag: 'empty' as const };
    const result = await engine.diff({
      from,
      to: { tag: 'schemaDatamodel', files: [schema] },
      script: true,
      exitCode: null,
      filters: NO_FILTERS,
    });
    const sql = (result as { stdout?: string }).stdout ?? '';
    return /^\s*(-- This is an empty migration\.)?\s*$/.test(sql) ? '' : sql;
  } finally {
    await close();
  }
}
