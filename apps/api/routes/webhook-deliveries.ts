// /v1/jobs/:id/webhook-deliveries: every delivery of the job's events with every attempt, and manual redelivery.
// Another tenant's job is a 404, like a job that does not exist.
import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import type { Queue } from 'bullmq';
import type { Db } from '../../../packages/platform/db/client.js';
import { getDelivery, listJobDeliveries, markForRedelivery } from '../../../packages/platform/webhooks/deliveries.js';
import { enqueueDelivery, type WebhookJobData } from '../../../packages/platform/webhooks/queue.js';
import { ApiError } from '../errors.js';
import { problems } from '../schemas/common.js';

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

const AttemptSchema = Type.Object({
  number: Type.Integer({ minimum: 1 }),
  status: Type.Union([Type.Literal('succeeded'), Type.Literal('failed')]),
  responseStatus: Type.Union([Type.Integer(), Type.Null()]),
  latencyMs: Type.Integer(),
  error: Nullable(Type.String()),
  responseBody: Nullable(Type.String()),
  startedAt: Type.String({ format: 'date-time' }),
});

export const WebhookDeliverySchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    webhookId: Type.String({ description: 'The webhook-id header: the same on every attempt and redelivery.' }),
    eventType: Type.String({ examples: ['job.succeeded'] }),
    url: Type.String(),
    status: Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed')]),
    attemptCount: Type.Integer(),
    responseStatus: Type.Union([Type.Integer(), Type.Null()]),
    error: Nullable(Type.String()),
    nextAttemptAt: Nullable(Type.String({ format: 'date-time' })),
    createdAt: Type.String({ format: 'date-time' }),
    deliveredAt: Nullable(Type.String({ format: 'date-time' })),
    redeliveries: Type.Integer(),
    attempts: Type.Array(AttemptSchema),
  },
  { title: 'WebhookDelivery' },
);

const JobParams = Type.Object({ id: Type.String({ format: 'uuid' }) });
const DeliveryParams = Type.Object({
  id: Type.String({ format: 'uuid' }),
  deliveryId: Type.String({ format: 'uuid' }),
});

export interface WebhookDeliveryRoutesOptions {
  db: Db;
  queue: Queue<WebhookJobData>;
  retryScheduleMs: number[];
  retryJitter: number;
}

export function createWebhookDeliveryRoutes(opts: WebhookDeliveryRoutesOptions) {
  return async function webhookDeliveryRoutes(app: FastifyInstance) {
    app.get(
      '/v1/jobs/:id/webhook-deliveries',
      {
        schema: {
          tags: ['webhooks'],
          summary: "The job's webhook deliveries and their attempts",
          params: JobParams,
          response: { 200: Type.Object({ items: Type.Array(WebhookDeliverySchema) }), ...problems(401, 404) },
        },
      },
      async (request) => {
        const { id } = request.params as { id: string };
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
        const { id, deliveryId } = request.params as { id: string; deliveryId: string };
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
}
