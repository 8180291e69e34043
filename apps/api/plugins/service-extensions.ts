// One place that turns the platform into the API's auth, webhook-delivery, live-events and UI plugins, for
// buildApp's `plugins` option:
//   const ext = openServiceExtensions(platform);
//   const app = await buildApp({ deps: platform, plugins: ext.plugins });  …  await ext.close();
import type { FastifyPluginAsync, RawServerDefault } from 'fastify';
import type { Platform } from '../../../packages/platform/platform.js';
import { authSection } from '../../../packages/platform/config/auth.js';
import type { AuthConfig, WebhookConfig } from '../../../packages/platform/config/config.js';
import { BullProgressBridge } from '../../../packages/platform/job-events/bull-bridge.js';
import { JobEventSubscriber } from '../../../packages/platform/job-events/bus.js';
import { QUEUE_NAMES } from '../../../packages/platform/queue/catalogue.js';
import { createRedis } from '../../../packages/platform/queue/redis.js';
import { createWebhookQueue } from '../../../packages/platform/webhooks/queue.js';
import { createJobEventsRoutes } from '../routes/events.js';
import { createWebhookDeliveryRoutes } from '../routes/webhook-deliveries.js';
import { createUiRoutes } from '../ui/routes.js';
import { createAuthPlugin } from './auth.js';
import { createJobWebhookPlugin } from './job-webhook.js';

type AppPlugin = FastifyPluginAsync<any, RawServerDefault, any>;

export interface ServiceExtensions {
  plugins: AppPlugin[];
  auth: AuthConfig;
  webhooks: WebhookConfig;
  close(): Promise<void>;
}

export function openServiceExtensions(
  platform: Pick<Platform, 'config' | 'db' | 'redis'>,
  opts: { eventsPollIntervalMs?: number } = {},
): ServiceExtensions {
  const { auth, webhooks } = platform.config;
  const prefix = platform.config.queuePrefix;
  const webhookQueue = createWebhookQueue(platform.redis, prefix, 'queue webhooks (api)');
  const subscriber = new JobEventSubscriber(createRedis(platform.config.redisUrl, 'subscriber'), prefix);
  // Progress that compress workers report through BullMQ reaches the SSE streams without a second publish.
  const bridge = new BullProgressBridge(subscriber, Object.values(QUEUE_NAMES), prefix, {
    url: platform.config.redisUrl,
    maxRetriesPerRequest: null,
  });
  return {
    auth,
    webhooks,
    plugins: [
      // A global plugin (its hooks must reach the other routes): the skip-override mark travels with the function.
      createAuthPlugin({ db: platform.db, redis: platform.redis, prefix, config: auth }) as unknown as AppPlugin,
      createJobWebhookPlugin() as unknown as AppPlugin,
      createWebhookDeliveryRoutes({
        db: platform.db,
        queue: webhookQueue,
        retryScheduleMs: webhooks.retryScheduleMs,
        retryJitter: webhooks.retryJitter,
      }),
      createJobEventsRoutes({ db: platform.db, subscriber, pollIntervalMs: opts.eventsPollIntervalMs }),
      createUiRoutes(),
    ],
    async close() {
      await bridge.close();
      await webhookQueue.close();
      await subscriber.close();
    },
  };
}

/**
 * The same plugins with nothing connected behind them: registering routes touches no dependency, so this is what
 * the OpenAPI document generator (openapi/document.ts) passes to buildApp to document auth, webhook deliveries
 * and events. Any request served through these would fail: never use them in a running API.
 */
export function documentationPlugins(): AppPlugin[] {
  const none = null as never;
  const auth = authSection({});
  return [
    createAuthPlugin({ db: none, redis: none, prefix: 'doc', config: auth }) as unknown as AppPlugin,
    createJobWebhookPlugin() as unknown as AppPlugin,
    createWebhookDeliveryRoutes({ db: none, queue: none, retryScheduleMs: [], retryJitter: 0 }),
    createJobEventsRoutes({ db: none, subscriber: none }),
    createUiRoutes(),
  ];
}
