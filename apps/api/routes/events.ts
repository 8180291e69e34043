// GET /v1/jobs/:id/events — Server-Sent Events: the job's current state first, then state changes and progress
// (stage, layer i/n, fraction) as workers publish them on Redis, ending with the final state. The jobs row is also
// re-read every `pollIntervalMs`, so a message lost by pub/sub (or a worker that does not publish) only delays an
// update, never loses the end of the stream.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Db } from '../../../packages/platform/db/client.js';
import type { JobEventSubscriber, JobStreamEvent } from '../../../packages/platform/job-events/bus.js';
import { ApiError } from '../errors.js';
import { problems } from '../schemas/common.js';
import { EventStream, JobEventsParams } from '../schemas/events.js';
import { readJobState, type JobStateView } from '../services/job-events.js';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export interface JobEventsRoutesOptions {
  db: Db;
  subscriber: JobEventSubscriber;
  /** @defaultValue 2000 */
  pollIntervalMs?: number;
  /** Comment lines that keep proxies from closing an idle stream. @defaultValue 15000 */
  heartbeatMs?: number;
}

function stateData(jobId: string, row: JobStateView) {
  return {
    jobId,
    state: row.state,
    progress: row.progress,
    stage: row.stage,
    detail: row.progressDetail ?? null,
    ...(TERMINAL.has(row.state) ? { error: row.error ?? null, metrics: row.metrics ?? null } : {}),
  };
}

export function createJobEventsRoutes(opts: JobEventsRoutesOptions) {
  const pollIntervalMs = opts.pollIntervalMs ?? 2000;
  const heartbeatMs = opts.heartbeatMs ?? 15_000;
  const jobEventsRoutes: FastifyPluginAsyncTypebox = async (app) => {
    app.get(
      '/v1/jobs/:id/events',
      {
        schema: {
          tags: ['jobs'],
          summary: 'Live job events (Server-Sent Events)',
          description:
            'text/event-stream. `event: state` (data: {jobId, state, progress, stage, detail}) first and on every ' +
            'state change; `event: progress` (data: {jobId, stage, fraction, layer?: {index, total, name}}) while ' +
            'running; the stream ends after the final state (succeeded | failed | cancelled, with metrics or error).',
          params: JobEventsParams,
          response: { 200: EventStream, ...problems(401, 404) },
        },
      },
      async (request, reply) => {
        const jobId = request.params.id;
        const tenantId = request.tenantId;
        if (!(await readJobState(opts.db, tenantId, jobId))) throw new ApiError('job-not-found');

        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-cache, no-transform',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        let seq = 0;
        let closed = false;
        let last = { state: '', progress: -1, stage: '' as string | null };
        const send = (event: string, data: unknown) => {
          if (closed) return;
          res.write(`id: ${++seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
        };

        let unsubscribe: (() => Promise<void>) | null = null;
        const timers: { poller?: NodeJS.Timeout; heartbeat?: NodeJS.Timeout } = {};
        const finish = async () => {
          if (closed) return;
          closed = true;
          clearInterval(timers.poller);
          clearInterval(timers.heartbeat);
          await unsubscribe?.().catch(() => undefined);
          res.end();
        };
        res.on('close', () => void finish());

        // Emits what changed in the row; ends the stream on a final state. Serialised so events stay in order.
        let chain = Promise.resolve();
        const enqueue = (step: () => Promise<void> | void) => {
          chain = chain
            .then(step)
            .catch((err) => request.log.warn({ err, jobId }, 'job events: reading the job failed'));
          return chain;
        };
        const syncFromDb = () =>
          enqueue(async () => {
            if (closed) return;
            const row = await readJobState(opts.db, tenantId, jobId);
            if (!row) {
              // Deleted while watched: nothing more will happen.
              send('state', { jobId, state: 'deleted' });
              return finish();
            }
            if (row.state !== last.state) {
              send('state', stateData(jobId, row));
            } else if (row.progress > last.progress || (row.progress === last.progress && row.stage !== last.stage)) {
              const d = (row.progressDetail ?? {}) as { layer?: unknown; message?: unknown };
              send('progress', { jobId, stage: row.stage, fraction: row.progress, layer: d.layer, message: d.message });
            }
            // Progress only moves forward: a row written before the last published event does not rewind it.
            const ahead = row.progress >= last.progress;
            last = {
              state: row.state,
              progress: ahead ? row.progress : last.progress,
              stage: ahead ? row.stage : last.stage,
            };
            if (TERMINAL.has(row.state)) await finish();
          });

        const onEvent = (e: JobStreamEvent) => {
          if (e.type === 'progress') {
            if (e.progress.fraction < last.progress) return; // older than what the row already showed
            last = { ...last, progress: e.progress.fraction, stage: e.progress.stage };
            const p = e.progress;
            void enqueue(() =>
              send('progress', { jobId, stage: p.stage, fraction: p.fraction, layer: p.layer, message: p.message }),
            );
          } else {
            // State changes are read back from the row (with metrics/error), so what is sent is what is stored.
            void syncFromDb();
          }
        };
        try {
          // Subscribe before the first read: nothing published in between is missed.
          unsubscribe = await opts.subscriber.subscribe(jobId, onEvent);
        } catch (err) {
          request.log.warn({ err, jobId }, 'job events: Redis subscription failed; falling back to polling');
        }
        await syncFromDb();
        if (closed) return;
        timers.poller = setInterval(() => void syncFromDb(), pollIntervalMs);
        timers.heartbeat = setInterval(() => {
          if (!closed) res.write(': keep-alive\n\n');
        }, heartbeatMs);
      },
    );
  };
  return jobEventsRoutes;
}
