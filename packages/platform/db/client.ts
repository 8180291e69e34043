// The Prisma client (generated into prisma/generated, committed) over the pg driver adapter.
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient, Prisma } from '../../../prisma/generated/client.js';

export { Prisma };
export type Db = PrismaClient;
export type { JobState } from '../../../prisma/generated/enums.js';

/** Tenant every row belongs to until API keys (auth) assign one per caller. */
export const DEFAULT_TENANT_ID = '00000000-0000-4000-8000-000000000001';

export function createDb(databaseUrl: string, poolSize = 10): Db {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl, max: poolSize }) });
}

/**
 * Creates the default tenant when it is missing. Plain SQL over one pg connection, not Prisma: this runs before the
 * API listens, and Prisma's first query compiles its query plan in WebAssembly (about half a second of start-up on a
 * quiet machine); the API's first real request, or the key announcement right after listen, pays that instead.
 */
export async function ensureDefaultTenant(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`INSERT INTO tenants (id, name) VALUES ($1, 'default') ON CONFLICT (id) DO NOTHING`, [
      DEFAULT_TENANT_ID,
    ]);
  } finally {
    await client.end();
  }
}
