// GET /v1/jobs/:id/events shapes: a job id in, an event stream out.
import { Type } from 'typebox';

export const JobEventsParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

export const EventStream = {
  description: 'An event stream',
  content: { 'text/event-stream': { schema: Type.String() } },
};
