// `onnx-compress start` (what `npm start` runs): the API and a worker in one process, for one machine.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('start')
    .description('Run the API and a compress worker in one process')
    .action(async () => {
      // Loaded on use: the service stack (Fastify, Prisma, BullMQ) stays out of the CLI's other commands. The worker's
      // modules (the engine) load after the API listens: /healthz answers without waiting for them.
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
      await announceApiKeys(server.platform.db, (m) => server.app.log.warn(m), {
        createFirstKey: config.auth.bootstrapFirstKey,
      });
      const { startCompressWorker } = await import('../../../workers/compress/worker.js');
      const { startWebhookSide } = await import('../../../workers/webhooks/start.js');
      const webhooks = await startWebhookSide(server.platform, {
        log: {
          info: (o, m) => server.app.log.info(o, m),
          warn: (o, m) => server.app.log.warn(o, m),
          error: (o, m) => server.app.log.error(o, m),
        },
      });
      const worker = await startCompressWorker(server.platform, {
        log: {
          info: (o, m) => server.app.log.info(o, m),
          warn: (o, m) => server.app.log.warn(o, m),
          error: (o, m) => server.app.log.error(o, m),
        },
      });
      server.app.log.info(
        `API listening on ${server.url} (docs at ${server.url}/docs); worker on ${config.workerQueues.join(', ')}`,
      );
      closeOnSignals(
        async () => {
          // Running jobs finish (or are handed back) first; then deliveries stop; then the API and pools close.
          await worker.close();
          await webhooks.close();
          await server.close();
        },
        (m) => server.app.log.info(m),
      );
      await new Promise(() => {});
    });
}
