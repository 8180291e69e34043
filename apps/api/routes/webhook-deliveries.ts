// /v1/jobs/:id/webhook-deliveries: every delivery of the job's events with every attempt, and manual redelivery.
// Another tenant's job is a 404, like a job that does not exist.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Queue } from 'bullmq';
import type { Db } from '../../../packages/platform/db/client.js';
import { getDelivery, listJobDeliveries, markForRedelivery } from '../../../packages/platform/webhooks/deliveries.js';
import { enqueueDelivery, type WebhookJobData } from '../../../packages/platform/webhooks/queue.js';
import { ApiError } from '../errors.js';
import { problems } from '../schemas/common.js';
import { DeliveryList, DeliveryParams, JobParams, WebhookDeliverySchema } from '../schemas/webhook-deliveries.js';

export interface WebhookDeliveryRoutesOptions {
  db: Db;
  queue: Queue<WebhookJobData>;
  retryScheduleMs: number[];
  retryJitter: number;
}

export function createWebhookDeliveryRoutes(opts: WebhookDeliveryRoutesOptions) {
  const webhookDeliveryRoutes: FastifyPluginAsyncTypebox = async (app) => {
    app.get(
      '/v1/jobs/:id/webhook-deliveries',
      {
        schema: {
          tags: ['webhooks'],
          summary: "The job's webhook deliveries and their attempts",
          params: JobParams,
          response: { 200: DeliveryList, ...problems(401, 404) },
        },
      },
      async (request) => {
        const { id } = request.params;
        const items = await listJobDeliveries(opts.db, request.tenantId, id);
        if (!items) throw new ApiError('job-not-found');
        return { items };
      },
    );

    app.post(
      '/v1/jobs/:id/webhook-deliveries/:deliveryId/redeliver',
      {
        schema: {
          tags: ['webhooks'],
          summary: 'Deliver the event again (same webhook-id, the retry schedule starts over)',
          description: 'A delivery still pending is left alone and returned as it is.',
          params: DeliveryParams,
          response: { 202: WebhookDeliverySchema, ...problems(401, 404) },
        },
      },
      async (request, reply) => {
        const { id, deliveryId } = request.params;
        const marked = await markForRedelivery(opts.db, request.tenantId, id, deliveryId);
        if (!marked.ok && marked.code === 'not-found') throw new ApiError('not-found', 'no such webhook delivery');
        if (marked.ok) {
          await enqueueDelivery(opts.queue, deliveryId, marked.run, {
            scheduleMs: opts.retryScheduleMs,
            jitter: opts.retryJitter,
          });
        }
        const view = await getDelivery(opts.db, request.tenantId, id, deliveryId);
        if (!view) throw new ApiError('not-found', 'no such webhook delivery');
        return reply.status(202).send(view);
      },
    );
  };
  return webhookDeliveryRoutes;
}
