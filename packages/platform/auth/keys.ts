// API key lifecycle against Postgres: create (shown once), list, revoke, authenticate. Tenants are found or created
// by name when a key is created for them.
import type { PrismaClient } from '../../../prisma/generated/client.js';
import { displayPrefix, generateApiKey, hashApiKey, isWellFormedApiKey } from './api-key.js';

export interface CreatedKey {
  /** The key itself: returned once, never stored. */
  key: string;
  id: string;
  name: string;
  prefix: string;
  tenantId: string;
  tenantName: string;
}

export interface KeySummary {
  id: string;
  name: string;
  prefix: string;
  tenantId: string;
  tenantName: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export interface AuthenticatedKey {
  keyId: string;
  tenantId: string;
}

export class KeyError extends Error {
  override readonly name = 'KeyError';
  constructor(
    readonly code: 'invalid-tenant-name' | 'invalid-key-name' | 'key-not-found' | 'ambiguous-key',
    message: string,
  ) {
    super(message);
  }
}

/** How stale last_used_at may get before a request writes it again (keeps auth off the write path). */
const LAST_USED_RESOLUTION_MS = 60_000;

function checkName(kind: 'tenant' | 'key', value: string): string {
  const v = value.trim();
  if (v.length < 1 || v.length > 100 || [...v].some((c) => c.charCodeAt(0) < 0x20)) {
    throw new KeyError(`invalid-${kind}-name`, `${kind} name must be 1–100 printable characters`);
  }
  return v;
}

/** Finds the tenant named `name` (oldest wins if several exist) or creates it, race-free across processes. */
export async function findOrCreateTenant(db: PrismaClient, name: string): Promise<{ id: string; name: string }> {
  const tenantName = checkName('tenant', name);
  return db.$transaction(async (tx) => {
    // Serialise concurrent creators of the same name: tenants.name has no unique index of its own.
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${'tenant:' + tenantName}))`;
    const found = await tx.tenant.findFirst({ where: { name: tenantName }, orderBy: { createdAt: 'asc' } });
    return found ?? (await tx.tenant.create({ data: { name: tenantName } }));
  });
}

export async function createApiKey(db: PrismaClient, opts: { tenant: string; name?: string }): Promise<CreatedKey> {
  const tenant = await findOrCreateTenant(db, opts.tenant);
  const name = checkName('key', opts.name ?? 'default');
  const key = generateApiKey();
  const row = await db.apiKey.create({
    data: { tenantId: tenant.id, name, prefix: displayPrefix(key), hash: hashApiKey(key) },
  });
  return { key, id: row.id, name, prefix: row.prefix, tenantId: tenant.id, tenantName: tenant.name };
}

export async function listApiKeys(db: PrismaClient, opts: { tenant?: string } = {}): Promise<KeySummary[]> {
  const rows = await db.apiKey.findMany({
    where: opts.tenant ? { tenant: { name: opts.tenant } } : {},
    include: { tenant: true },
    orderBy: { createdAt: 'asc' },
  });
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    tenantId: r.tenantId,
    tenantName: r.tenant.name,
    createdAt: r.createdAt,
    lastUsedAt: r.lastUsedAt,
    revokedAt: r.revokedAt,
  }));
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Revokes a key by id or by its display prefix (must match one key). Revoking twice keeps the first time. */
export async function revokeApiKey(db: PrismaClient, idOrPrefix: string): Promise<KeySummary> {
  const where = UUID.test(idOrPrefix) ? { id: idOrPrefix } : { prefix: idOrPrefix };
  const matches = await db.apiKey.findMany({ where, take: 2 });
  if (matches.length === 0) throw new KeyError('key-not-found', `no API key with id or prefix "${idOrPrefix}"`);
  if (matches.length > 1) throw new KeyError('ambiguous-key', `"${idOrPrefix}" matches several keys: use the id`);
  const row = matches[0];
  if (!row.revokedAt)
    await db.apiKey.updateMany({ where: { id: row.id, revokedAt: null }, data: { revokedAt: new Date() } });
  const [summary] = (await listApiKeys(db)).filter((k) => k.id === row.id);
  return summary;
}

/** The tenant and key behind a presented key, or null when unknown, malformed or revoked. */
export async function authenticateApiKey(db: PrismaClient, key: string): Promise<AuthenticatedKey | null> {
  if (!isWellFormedApiKey(key)) return null;
  const row = await db.apiKey.findUnique({ where: { hash: hashApiKey(key) } });
  if (!row || row.revokedAt) return null;
  const now = Date.now();
  if (!row.lastUsedAt || now - row.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS) {
    await db.apiKey.update({ where: { id: row.id }, data: { lastUsedAt: new Date(now) } });
  }
  return { keyId: row.id, tenantId: row.tenantId };
}

export async function countApiKeys(db: PrismaClient): Promise<number> {
  return db.apiKey.count();
}
