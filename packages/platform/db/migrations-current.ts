// The common start: every migration in the folder is already applied. Checking that takes one query; applying
// through the schema engine means instantiating its WebAssembly module first (most of a second of a service's
// start-up). Anything short of an exact match — a migration not yet recorded, one that failed or was rolled back, a
// checksum that differs, no migrations table — answers false, and the schema engine decides as before.
import { createHash } from 'node:crypto';
import type pg from 'pg';

export interface FolderMigration {
  name: string;
  /** migration.sql as it is on disk. */
  sql: string;
}

/** True when `_prisma_migrations` records every folder migration as finished, not rolled back, same checksum. */
export async function migrationsCurrent(client: pg.Client, folder: FolderMigration[]): Promise<boolean> {
  let rows: { migration_name: string; checksum: string; finished: boolean; rolled_back: boolean }[];
  try {
    const r = await client.query(
      `SELECT migration_name, checksum, finished_at IS NOT NULL AS finished, rolled_back_at IS NOT NULL AS rolled_back
         FROM _prisma_migrations`,
    );
    rows = r.rows;
  } catch {
    return false; // no table yet (a new database) or not readable: let the engine handle it
  }
  // A failed migration (started, never finished, not rolled back) blocks `migrate deploy`: the engine must say so.
  if (rows.some((r) => !r.finished && !r.rolled_back)) return false;
  const applied = new Map(rows.filter((r) => r.finished && !r.rolled_back).map((r) => [r.migration_name, r.checksum]));
  // Prisma's checksum is the SHA-256 of the migration script, hex.
  return folder.every((m) => applied.get(m.name) === createHash('sha256').update(m.sql).digest('hex'));
}
