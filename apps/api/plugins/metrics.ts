// Prometheus metrics. Jobs by state, queue depth and job durations are read at scrape time from Postgres and Redis,
// so they are right whichever process (API or worker, one machine or many) did the work; upload bytes are counted
// as they arrive in this process.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ServiceDeps } from '../services/deps.js';

export interface ApiMetrics {
  registry: Registry;
  uploadBytes: Counter<'kind'>;
}

const STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;

export function createApiMetrics(deps: Pick<ServiceDeps, 'db' | 'queues'>): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'onnx_compress_' });
  const uploadBytes = new Counter({
    name: 'onnx_compress_upload_bytes_total',
    help: 'Bytes received in model and dataset uploads',
    labelNames: ['kind'],
    registers: [registry],
  });
  new Gauge({
    name: 'onnx_compress_jobs',
    help: 'Jobs by state',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const groups = await deps.db.job.groupBy({ by: ['state'], _count: { _all: true } });
      for (const s of STATES) this.set({ state: s }, groups.find((g) => g.state === s)?._count._all ?? 0);
    },
  });
  new Gauge({
    name: 'onnx_compress_queue_depth',
    help: 'BullMQ jobs per queue and status',
    labelNames: ['queue', 'status'],
    registers: [registry],
    async collect() {
      const depth = await deps.queues.depth();
      for (const [queue, counts] of Object.entries(depth)) {
        for (const [status, n] of Object.entries(counts)) this.set({ queue, status }, n);
      }
    },
  });
  // Finished jobs are folded into the histogram at scrape time. prom-client collects every metric of a scrape at
  // once, so the histogram's own collect() waits for the fold (and the gauge for the same fold): the first scrape
  // after jobs finished already shows their durations. Jobs finished after the watermark are observed once.
  let watermark = new Date();
  let folding: Promise<number> | null = null;
  const foldFinishedJobs = async (): Promise<number> => {
    const rows = await deps.db.job.findMany({
      where: { finishedAt: { gt: watermark }, startedAt: { not: null } },
      select: { state: true, startedAt: true, finishedAt: true },
      orderBy: { finishedAt: 'asc' },
      take: 10_000,
    });
    for (const r of rows)
      durations.observe({ state: r.state }, (r.finishedAt!.getTime() - r.startedAt!.getTime()) / 1000);
    if (rows.length) watermark = rows[rows.length - 1].finishedAt!;
    return rows.length;
  };
  const fold = () => (folding ??= foldFinishedJobs().finally(() => (folding = null)));
  new Gauge({
    name: 'onnx_compress_metrics_scrape_jobs_observed',
    help: 'Finished jobs folded into the duration histogram at the last scrape',
    registers: [registry],
    async collect() {
      this.set(await fold());
    },
  });
  const durations: Histogram<'state'> = new Histogram({
    name: 'onnx_compress_job_duration_seconds',
    help: 'Run time (start to finish) of jobs that finished since this process started',
    labelNames: ['state'],
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200],
    registers: [registry],
    async collect() {
      await fold();
    },
  });
  return { registry, uploadBytes };
}
