// Webhook delivery end to end over real Postgres, Redis (BullMQ) and HTTP: a local receiver verifies signatures with
// the job's secret; failures are retried on a short schedule with the same webhook-id; a receiver down for longer
// than the schedule ends `failed` with every attempt recorded; SSRF targets are refused when not allow-listed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { loadConfig } from '../../packages/platform/config/config.js';
import { listJobDeliveries, markForRedelivery } from '../../packages/platform/webhooks/deliveries.js';
import { dispatchJob } from '../../packages/platform/webhooks/dispatcher.js';
import { enqueueDelivery } from '../../packages/platform/webhooks/queue.js';
import { generateWebhookSecret } from '../../packages/platform/webhooks/secret.js';
import { startWebhookWorker, type RunningWebhookWorker } from '../../workers/webhooks/worker.js';
import {
  createTestDatabase,
  dropRedisPrefix,
  REDIS_URL,
  seedFinishedJob,
  uniquePrefix,
  waitFor,
  type TestDatabase,
} from './webhooks-support.js';

/**
 * The webhook section of the one service configuration, with the dispatcher's timed sweep off (tests that need a
 * sweep call `sweep()`). The deployments of this file (allow-listed, SSRF, restart) share one database, unlike real
 * ones; each timed sweep dispatches every finished job of the database without a delivery into its own queue, so
 * under CPU load one deployment's sweep could take a job another test was about to dispatch (seen: the SSRF
 * deployment refusing the second attempt of the "receiver down" delivery, which then ended with 2 attempts).
 */
const webhookConfig = (env: Record<string, string>) => loadConfig({ ...env, WEBHOOK_SWEEP_MS: '3600000' }).webhooks;

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A receiver whose answer to the n-th request (1-based) is `status(n)`. */
async function startReceiver(status: (n: number) => number) {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(status(received.length)).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    received,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}

let tdb: TestDatabase;
const prefix = uniquePrefix('wh');
let worker: RunningWebhookWorker;
let ssrfWorker: RunningWebhookWorker;
/** The delivery workers' log lines: [level, message, fields]. */
const lines: [string, string, Record<string, unknown>][] = [];
const log = {
  info: (o: object, m?: string) => void lines.push(['info', m ?? '', o as Record<string, unknown>]),
  warn: (o: object, m?: string) => void lines.push(['warn', m ?? '', o as Record<string, unknown>]),
  error: (o: object, m?: string) => void lines.push(['error', m ?? '', o as Record<string, unknown>]),
};
const linesOf = (deliveryId: string) => lines.filter(([, , o]) => o.deliveryId === deliveryId);

before(async () => {
  tdb = await createTestDatabase('wh');
  const env = {
    WEBHOOK_RETRY_SCHEDULE: '100ms,150ms,200ms',
    WEBHOOK_RETRY_JITTER: '0.1',
    PUBLIC_URL: 'http://svc.test',
  };
  worker = startWebhookWorker({
    db: tdb.db,
    connection: { url: REDIS_URL, maxRetriesPerRequest: null },
    prefix,
    config: webhookConfig({ ...env, WEBHOOK_ALLOW_HOSTS: '127.0.0.1' }),
    log,
  });
  // A second deployment with no allow-list (its own queue prefix) for the SSRF cases.
  ssrfWorker = startWebhookWorker({
    db: tdb.db,
    connection: { url: REDIS_URL, maxRetriesPerRequest: null },
    prefix: prefix + '_ssrf',
    config: webhookConfig(env),
    log,
  });
});

after(async () => {
  await worker?.close();
  await ssrfWorker?.close();
  await dropRedisPrefix(prefix);
  await dropRedisPrefix(prefix + '_ssrf');
  await tdb?.drop();
});

async function settled(tenantId: string, jobId: string) {
  // A bound on waiting, not on the schedule: a starved event loop (a loaded CI machine) stretches every step.
  return waitFor(
    'delivery to settle',
    async () => {
      const list = await listJobDeliveries(tdb.db, tenantId, jobId);
      return list && list.length === 1 && list[0].status !== 'pending' ? list[0] : null;
    },
    60_000,
  );
}

test('the receiver verifies the signature with the secret; payload carries state, metrics and artifact URLs', async () => {
  const rx = await startReceiver(() => 204);
  try {
    const secret = generateWebhookSecret();
    const { tenant, job } = await seedFinishedJob(tdb.db, { url: rx.url, secret });
    // The sweep (no call from the compress worker) finds the finished job and creates its delivery.
    await worker.sweep();
    const d = await settled(tenant.id, job.id);
    assert.equal(d.status, 'succeeded');
    assert.equal(rx.received.length, 1);
    const { headers, body } = rx.received[0];
    const verified = new Webhook(secret).verify(body, headers as Record<string, string>) as {
      type: string;
      data: {
        jobId: string;
        state: string;
        metrics: unknown;
        artifacts: { name: string; url: string; sha256: string }[];
      };
    };
    assert.equal(verified.type, 'job.succeeded');
    assert.equal(verified.data.jobId, job.id);
    assert.equal(verified.data.state, 'succeeded');
    assert.deepEqual(verified.data.metrics, { sparsity: 0.5 });
    assert.deepEqual(verified.data.artifacts, [
      { name: 'model.onnx', url: `http://svc.test/v1/jobs/${job.id}/artifacts/model.onnx`, sha256: 'bb'.repeat(32) },
    ]);
    assert.equal(headers['webhook-id'], d.webhookId);
    assert.throws(() => new Webhook(generateWebhookSecret()).verify(body, headers as Record<string, string>));
    assert.equal(d.attempts.length, 1);
    assert.equal(d.attempts[0].responseStatus, 204);
    // A second sweep and a direct dispatch do not create a second delivery.
    await worker.sweep();
    await dispatchJob(worker.dispatch, job.id);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await listJobDeliveries(tdb.db, tenant.id, job.id))!.length, 1);
    assert.equal(rx.received.length, 1);
  } finally {
    await rx.close();
  }
});

test('a receiver failing the first 2 attempts gets the event on attempt 3 with the same webhook-id', async () => {
  const rx = await startReceiver((n) => (n <= 2 ? 503 : 200));
  try {
    const secret = generateWebhookSecret();
    const { tenant, job } = await seedFinishedJob(tdb.db, { url: rx.url, secret, state: 'failed' });
    await dispatchJob(worker.dispatch, job.id);
    const d = await settled(tenant.id, job.id);
    assert.equal(d.status, 'succeeded');
    assert.equal(rx.received.length, 3);
    const ids = new Set(rx.received.map((r) => r.headers['webhook-id']));
    assert.deepEqual([...ids], [d.webhookId]);
    for (const r of rx.received) new Webhook(secret).verify(r.body, r.headers as Record<string, string>);
    assert.deepEqual(
      d.attempts.map((a) => [a.number, a.status, a.responseStatus]),
      [
        [1, 'failed', 503],
        [2, 'failed', 503],
        [3, 'succeeded', 200],
      ],
    );
    assert.match(d.attempts[0].error ?? '', /HTTP 503/);
    for (const a of d.attempts) assert.ok(a.latencyMs >= 0);
    // The retries waited at least the (jittered) schedule: 100ms·0.9 then 150ms·0.9.
    const t = d.attempts.map((a) => Date.parse(a.startedAt));
    assert.ok(t[1] - t[0] >= 85, `gap 1 was ${t[1] - t[0]} ms`);
    assert.ok(t[2] - t[1] >= 130, `gap 2 was ${t[2] - t[1]} ms`);
    assert.equal(JSON.parse(rx.received[2].body).type, 'job.failed');
    // One log line per attempt: two failures (with the retry delay), then delivered; the host only, no secret.
    assert.deepEqual(
      linesOf(d.id).map(([level, msg, o]) => [level, msg, o.attempt, o.responseStatus]),
      [
        ['warn', 'webhook attempt failed', 1, 503],
        ['warn', 'webhook attempt failed', 2, 503],
        ['info', 'webhook delivered', 3, 200],
      ],
    );
    assert.equal(linesOf(d.id)[0][2].host, new URL(rx.url).host);
    assert.equal(typeof linesOf(d.id)[0][2].retryInMs, 'number');
    assert.equal(JSON.stringify(lines).includes(secret), false, 'no secret in the log');
  } finally {
    await rx.close();
  }
});

test('a receiver down longer than the schedule ends failed with all attempts recorded; redeliver runs it again', async () => {
  const rx = await startReceiver(() => 200);
  const url = rx.url;
  await rx.close(); // nothing listens on this port now
  const secret = generateWebhookSecret();
  const { tenant, job } = await seedFinishedJob(tdb.db, { url, secret, state: 'cancelled' });
  await dispatchJob(worker.dispatch, job.id);
  const d = await settled(tenant.id, job.id);
  assert.equal(d.status, 'failed');
  assert.equal(d.attempts.length, 4, 'first attempt + 3 retries of the schedule');
  for (const a of d.attempts) {
    assert.equal(a.status, 'failed');
    assert.equal(a.responseStatus, null);
    assert.match(a.error ?? '', /ECONNREFUSED/);
  }
  assert.equal(d.nextAttemptAt, null);

  // The receiver comes back on the same port; a manual redelivery succeeds with the same webhook-id.
  const back = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push({ id: String(req.headers['webhook-id']), body });
      res.writeHead(200).end();
    });
  });
  const got: { id: string; body: string }[] = [];
  await new Promise<void>((r) => back.listen(Number(new URL(url).port), '127.0.0.1', r));
  try {
    const marked = await markForRedelivery(tdb.db, tenant.id, job.id, d.id);
    assert.ok(marked.ok);
    if (marked.ok) {
      await enqueueDelivery(worker.dispatch.queue, d.id, marked.run, { scheduleMs: [100], jitter: 0 });
    }
    const again = await waitFor('redelivery', async () => {
      const list = await listJobDeliveries(tdb.db, tenant.id, job.id);
      return list && list[0].status === 'succeeded' ? list[0] : null;
    });
    assert.equal(got.length, 1);
    assert.equal(got[0].id, d.webhookId);
    assert.equal(again.attempts.length, 5);
    assert.equal(again.attempts[4].number, 5);
    assert.equal(again.redeliveries, 1);
    // Another tenant cannot see or redeliver it.
    const other = await tdb.db.tenant.create({ data: { name: 'other' } });
    assert.equal(await listJobDeliveries(tdb.db, other.id, job.id), null);
    assert.deepEqual(await markForRedelivery(tdb.db, other.id, job.id, d.id), { ok: false, code: 'not-found' });
  } finally {
    back.closeAllConnections();
    await new Promise((r) => back.close(r));
  }
});

for (const target of [
  'http://127.0.0.1:PORT/hook',
  'http://localhost:PORT/hook',
  'http://10.1.2.3/hook',
  'http://169.254.169.254/latest/meta-data/',
]) {
  test(`SSRF: ${target} is refused at send time, once, with nothing sent`, async () => {
    const rx = await startReceiver(() => 200);
    try {
      const url = target.replace('PORT', String(rx.port));
      const { tenant, job } = await seedFinishedJob(tdb.db, { url, secret: generateWebhookSecret() });
      await dispatchJob(ssrfWorker.dispatch, job.id);
      const d = await settled(tenant.id, job.id);
      assert.equal(d.status, 'failed');
      assert.equal(d.attempts.length, 1, 'a policy refusal is not retried');
      assert.match(d.attempts[0].error ?? '', /^ssrf-refused: refused: .* \((loopback|private|linkLocal)\)/);
      assert.equal(rx.received.length, 0);
      const refused = linesOf(d.id);
      assert.deepEqual(
        refused.map(([level, msg, o]) => [level, msg, o.final]),
        [['warn', 'webhook refused', true]],
      );
      assert.match(String(refused[0][2].error), /^ssrf-refused/);
    } finally {
      await rx.close();
    }
  });
}

test('a retry scheduled before the delivery worker stops is sent by the next one, same webhook-id', async () => {
  const rx = await startReceiver((n) => (n === 1 ? 500 : 200));
  const restartPrefix = prefix + '_restart';
  const config = webhookConfig({
    WEBHOOK_RETRY_SCHEDULE: '1500ms',
    WEBHOOK_RETRY_JITTER: '0',
    WEBHOOK_ALLOW_HOSTS: '127.0.0.1',
  });
  const connection = { url: REDIS_URL, maxRetriesPerRequest: null };
  let first: RunningWebhookWorker | undefined = startWebhookWorker({
    db: tdb.db,
    connection,
    prefix: restartPrefix,
    config,
  });
  let second: RunningWebhookWorker | undefined;
  try {
    const { tenant, job } = await seedFinishedJob(tdb.db, { url: rx.url, secret: generateWebhookSecret() });
    await dispatchJob(first.dispatch, job.id);
    await waitFor('the first attempt', async () => rx.received.length === 1);
    await first.close(); // the retry now waits in Redis, with no worker running
    first = undefined;
    const between = (await listJobDeliveries(tdb.db, tenant.id, job.id))![0];
    assert.equal(between.status, 'pending');
    assert.ok(between.nextAttemptAt);
    second = startWebhookWorker({ db: tdb.db, connection, prefix: restartPrefix, config });
    const d = await settled(tenant.id, job.id);
    assert.equal(d.status, 'succeeded');
    assert.equal(rx.received.length, 2);
    assert.equal(rx.received[0].headers['webhook-id'], rx.received[1].headers['webhook-id']);
    assert.deepEqual(
      d.attempts.map((a) => [a.number, a.responseStatus]),
      [
        [1, 500],
        [2, 200],
      ],
    );
  } finally {
    await first?.close();
    await second?.close();
    await dropRedisPrefix(restartPrefix);
    await rx.close();
  }
});
