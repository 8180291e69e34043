// /v1/jobs/:id/webhook-deliveries shapes. A delivery's fields are the platform's DeliveryView (written there, where
// the rows are read); the typed routes check at compile time that what it returns is what this schema promises.
import { Type } from 'typebox';

/** `T | null` as an anyOf, as this resource has always been documented (common.ts's Nullable writes a type list). */
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

export const DeliveryList = Type.Object({ items: Type.Array(WebhookDeliverySchema) });

export const JobParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

export const DeliveryParams = Type.Object({
  id: Type.String({ format: 'uuid' }),
  deliveryId: Type.String({ format: 'uuid' }),
});
