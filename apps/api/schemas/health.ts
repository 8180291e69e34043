// Liveness, readiness and metrics shapes.
import { Type, type Static } from 'typebox';

const Check = Type.Object({ ok: Type.Boolean(), error: Type.Optional(Type.String()) });
export type ReadyCheck = Static<typeof Check>;

export const Ready = Type.Object({
  status: Type.String(),
  checks: Type.Object({ postgres: Check, redis: Check, storage: Check }),
});

export const Live = Type.Object({ status: Type.Literal('ok') });

export const PrometheusText = {
  description: 'Prometheus text format',
  content: { 'text/plain': { schema: { type: 'string' } } },
};
