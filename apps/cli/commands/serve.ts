// `onnx-compress serve`: the HTTP API alone (run workers elsewhere with `onnx-compress worker`).
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('serve')
    .description('Run the HTTP API (configuration from the environment: PORT, HOST, DATABASE_URL, REDIS_URL, …)')
    .action(async () => {
      // Loaded on use: the service stack (Fastify, Prisma, BullMQ) stays out of the CLI's other commands.
      const { loadConfig } = await import('../../../packages/platform/config/config.js');
      const config = loadConfig();
      const { migrateEarly } = await import('../actions/migrate-early.js');
      const migrated = migrateEarly(config.databaseUrl); // while the modules below load
      const [{ closeOnSignals, startServer }, { openServiceExtensions }, { announceApiKeys }] = await Promise.all([
        import('../../api/server.js'),
        import('../../api/plugins/service-extensions.js'),
        import('../../../packages/platform/auth/bootstrap.js'),
      ]);
      const applied = await migrated;
      // Auth, webhook deliveries, live events and the job page are plugins built from the platform.
      const server = await startServer(config, { migrate: false, extensions: (p) => openServiceExtensions(p) });
      if (applied.length) server.app.log.info(`applied migrations: ${applied.join(', ')}`);
      // Graceful from the moment it listens (a SIGTERM during the key announcement below closes it cleanly too).
      closeOnSignals(server.close, (m) => server.app.log.info(m));
      await announceApiKeys(server.platform.db, (m) => server.app.log.warn(m), {
        createFirstKey: config.auth.bootstrapFirstKey,
      });
      server.app.log.info(`API listening on ${server.url} (docs at ${server.url}/docs)`);
      await new Promise(() => {}); // runs until a signal
    });
}
