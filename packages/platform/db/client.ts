// The Prisma client (generated into prisma/generated, committed) over the pg driver adapter.
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient, Prisma } from '../../../prisma/generated/client.js';

export { Prisma };
export type Db = PrismaClient;
export type { JobState } from '../../../prisma/generated/enums.js';

/** Tenant every row belongs to until API keys (auth) assign one per caller. */
export const DEFAULT_TENANT_ID = '00000000-0000-4000-8000-000000000001';

export function createDb(databaseUrl: string, poolSize = 10): Db {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl, max: poolSize }) });
}

export async function ensureDefaultTenant(db: Db): Promise<void> {
  await db.tenant.upsert({
    where: { id: DEFAULT_TENANT_ID },
    create: { id: DEFAULT_TENANT_ID, name: 'default' },
    update: {},
  });
}
