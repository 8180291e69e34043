// Runs the API: opens the platform, builds the app, listens, and closes gracefully on SIGTERM/SIGINT (stop
// accepting, finish in-flight requests, then close queues and pools).
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../packages/platform/config/config.js';
import { startReconciler } from '../../packages/platform/queue/reconcile.js';
import { openPlatform, type Platform } from '../../packages/platform/platform.js';
import { startStagingSweeper } from '../../packages/platform/storage/sweep.js';
import { buildApp, type BuildAppOptions } from './app.js';

export interface RunningServer {
  app: FastifyInstance;
  platform: Platform;
  url: string;
  close(): Promise<void>;
}

/** Plugins built from the platform (auth, webhook delivery, SSE, UI), closed after the app. */
export type Extensions = (platform: Platform) => {
  plugins: NonNullable<BuildAppOptions['plugins']>;
  close(): Promise<void>;
};

export async function startServer(
  config: Config,
  extra: Pick<BuildAppOptions, 'resolveTenant' | 'plugins' | 'logger'> & {
    extensions?: Extensions;
    /** false: the caller applied the migrations already (the CLI does, while the modules load). Default true. */
    migrate?: boolean;
  } = {},
): Promise<RunningServer> {
  const { extensions, migrate, ...appOptions } = extra;
  const platform = await openPlatform(config, { migrate });
  let ext: ReturnType<Extensions> | undefined;
  let app: FastifyInstance | undefined;
  let sweeper: ReturnType<typeof startStagingSweeper> | undefined;
  let url: string;
  try {
    ext = extensions?.(platform);
    app = await buildApp({
      deps: platform,
      ...appOptions,
      plugins: [...(appOptions.plugins ?? []), ...(ext?.plugins ?? [])],
    });
    // Uploads a previous run of this API was receiving when it died are swept before new ones are taken.
    sweeper = startStagingSweeper(platform.storage.stagingDir, config.stagingMaxAgeMs, app.log);
    await sweeper.first;
    url = await app.listen({ port: config.port, host: config.host });
  } catch (e) {
    // What was opened is closed again: open connections (Redis, the pools) would keep the process alive after the
    // CLI has printed the error, a server that never answers instead of one that exits.
    sweeper?.stop();
    await app?.close().catch(() => {});
    await ext?.close().catch(() => {});
    await platform.close().catch(() => {});
    throw e;
  }
  // Route schemas not compiled yet (app.ts compiles them on first use so that listening does not wait for them).
  app.compileDeferredSchemas().catch((e) => app.log.error({ err: e }, 'a route schema does not compile'));
  // Jobs whose BullMQ entry Redis lost are queued again from Postgres: now, periodically, and on Redis reconnects.
  const reconciler = startReconciler({ ...platform, log: app.log }, { intervalMs: config.reconcileIntervalMs });
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      sweeper.stop();
      await app.close();
      await reconciler.stop();
      await ext?.close();
      await platform.close();
    })());
  return { app, platform, url, close };
}

/** Closes `close` once on the first SIGTERM/SIGINT; a second signal exits at once. */
export function closeOnSignals(close: () => Promise<void>, log: (msg: string) => void): void {
  let signalled = false;
  const onSignal = (signal: string) => {
    if (signalled) process.exit(1);
    signalled = true;
    log(`${signal}: shutting down`);
    close().then(
      () => process.exit(0),
      (e) => {
        log(`shutdown failed: ${(e as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
}
