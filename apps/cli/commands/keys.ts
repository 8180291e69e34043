// `onnx-compress keys create|list|revoke`: API keys for the service, straight against its database (DATABASE_URL;
// migrations are applied first, so this works before the first `npm start`). A created key is printed once.
import type { Command } from 'commander';

async function withDb<T>(fn: (db: import('../../../packages/platform/db/client.js').Db) => Promise<T>): Promise<T> {
  // Loaded on use: Prisma stays out of the CLI's other commands.
  const { loadConfig } = await import('../../../packages/platform/config/config.js');
  const { migrate } = await import('../../../packages/platform/db/migrate.js');
  const { createDb } = await import('../../../packages/platform/db/client.js');
  const config = loadConfig();
  let db = createDb(config.databaseUrl, 2);
  try {
    // Migrate only a database that lacks the tables (before the first `npm start`): a running service owns its
    // schema, and migrating beside it would wait on its migration lock.
    const ready = await db.$queryRaw<{ ok: boolean }[]>`SELECT to_regclass('public.api_keys') IS NOT NULL AS ok`
      .then((r) => r[0]?.ok === true)
      .catch(() => false);
    if (!ready) {
      await db.$disconnect();
      await migrate(config.databaseUrl);
      db = createDb(config.databaseUrl, 2);
    }
    return await fn(db);
  } finally {
    await db.$disconnect();
  }
}

const iso = (d: Date | null) => (d ? d.toISOString() : '-');

export function register(program: Command): void {
  const keys = program.command('keys').description('Manage API keys (Authorization: Bearer <key>) and tenants');

  keys
    .command('create')
    .description('Create an API key for a tenant (the tenant is created if new); the key is shown only once')
    .requiredOption('--tenant <name>', 'tenant the key acts for')
    .option('--name <name>', 'a label for the key', 'default')
    .option('--json', 'print {"key", "id", "name", "prefix", "tenant", "tenantId"}')
    .action(async (opts: { tenant: string; name: string; json?: boolean }) => {
      const { createApiKey } = await import('../../../packages/platform/auth/keys.js');
      const k = await withDb((db) => createApiKey(db, { tenant: opts.tenant, name: opts.name }));
      if (opts.json) {
        process.stdout.write(
          JSON.stringify({
            key: k.key,
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            tenant: k.tenantName,
            tenantId: k.tenantId,
          }) + '\n',
        );
      } else {
        process.stdout.write(
          `Created API key "${k.name}" (id ${k.id}) for tenant "${k.tenantName}". It is shown only now:\n\n` +
            `  ${k.key}\n\nSend it as "Authorization: Bearer <key>". Revoke with: onnx-compress keys revoke ${k.id}\n`,
        );
      }
    });

  keys
    .command('list')
    .description('List API keys (prefix, name, tenant, created, last used, revoked)')
    .option('--tenant <name>', 'only this tenant')
    .option('--json', 'print a JSON array')
    .action(async (opts: { tenant?: string; json?: boolean }) => {
      const { listApiKeys } = await import('../../../packages/platform/auth/keys.js');
      const rows = await withDb((db) => listApiKeys(db, { tenant: opts.tenant }));
      if (opts.json) {
        process.stdout.write(JSON.stringify(rows) + '\n');
        return;
      }
      if (rows.length === 0) {
        process.stdout.write('no API keys; create one with: onnx-compress keys create --tenant <name>\n');
        return;
      }
      const lines = rows.map((r) =>
        [
          r.id,
          `${r.prefix}…`,
          r.name,
          r.tenantName,
          iso(r.createdAt),
          iso(r.lastUsedAt),
          r.revokedAt ? `revoked ${iso(r.revokedAt)}` : 'active',
        ].join('  '),
      );
      process.stdout.write(['id  prefix  name  tenant  created  last-used  status', ...lines].join('\n') + '\n');
    });

  keys
    .command('revoke')
    .description('Revoke an API key by id or by its displayed prefix; requests with it get 401 from then on')
    .argument('<id-or-prefix>')
    .option('--json', 'print the revoked key as JSON')
    .action(async (idOrPrefix: string, opts: { json?: boolean }) => {
      const { revokeApiKey } = await import('../../../packages/platform/auth/keys.js');
      const k = await withDb((db) => revokeApiKey(db, idOrPrefix.replace(/…$/, '')));
      process.stdout.write(
        opts.json ? JSON.stringify(k) + '\n' : `revoked key "${k.name}" (${k.prefix}…) of tenant "${k.tenantName}"\n`,
      );
    });
}
