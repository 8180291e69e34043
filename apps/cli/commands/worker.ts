// `onnx-compress worker`: a compress worker alone (WORKER_QUEUES=cpu|gpu|cpu,gpu; EXECUTION_PROVIDERS=cuda,cpu).
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('worker')
    .description('Run a compress worker (queues from WORKER_QUEUES, execution providers from EXECUTION_PROVIDERS)')
    .action(async () => {
      // Loaded on use: the service stack (Fastify, Prisma, BullMQ) stays out of the CLI's other commands.
      const { loadConfig } = await import('../../../packages/platform/config/config.js');
      const { openPlatform } = await import('../../../packages/platform/platform.js');
      const { startCompressWorker } = await import('../../../workers/compress/worker.js');
      const { closeOnSignals } = await import('../../api/server.js');
      const { startWebhookSide } = await import('../../../workers/webhooks/start.js');
      const { pino } = await import('pino');
      const config = loadConfig();
      // The same JSON lines as the API's log (job started / succeeded / failed, webhook delivered / refused).
      const logger = pino({ level: config.logLevel });
      const log = {
        info: (o: object, m?: string) => logger.info(o, m),
        warn: (o: object, m?: string) => logger.warn(o, m),
        error: (o: object, m?: string) => logger.error(o, m),
      };
      const platform = await openPlatform(config, { log: (m) => logger.info(m), errorLog: log });
      const worker = await startCompressWorker(platform, { log });
      // Every worker process also delivers webhooks (own BullMQ queue) and publishes job-finished events.
      const webhooks = await startWebhookSide(platform, { log });
      logger.info(
        `worker consuming ${config.workerQueues.map((q) => `compress-${q}`).join(', ')} ` +
          `(execution providers: ${config.executionProviders.join(' → ')}, concurrency ${config.workerConcurrency})`,
      );
      closeOnSignals(
        async () => {
          await worker.close();
          await webhooks.close();
          await platform.close();
        },
        (m) => logger.info(m),
      );
      await new Promise(() => {});
    });
}
