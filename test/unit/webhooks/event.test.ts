import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildJobEvent } from '../../../packages/platform/webhooks/event.js';

test('terminal states map to event types with absolute artifact URLs', () => {
  const at = new Date('2026-03-01T00:00:00Z');
  const e = buildJobEvent(
    {
      id: 'job 1',
      state: 'succeeded',
      metrics: { sparsity: 0.5 },
      artifacts: [{ name: 'model.onnx', sha256: 'ab'.repeat(32) }],
    },
    'https://c.example.com/',
    at,
  );
  assert.deepEqual(e, {
    type: 'job.succeeded',
    timestamp: '2026-03-01T00:00:00.000Z',
    data: {
      jobId: 'job 1',
      state: 'succeeded',
      metrics: { sparsity: 0.5 },
      artifacts: [
        {
          name: 'model.onnx',
          url: 'https://c.example.com/v1/jobs/job%201/artifacts/model.onnx',
          sha256: 'ab'.repeat(32),
        },
      ],
    },
  });
  const failed = buildJobEvent(
    { id: 'j', state: 'failed', metrics: null, artifacts: [], error: { code: 'bad-model', message: 'm' } },
    'http://x',
  );
  assert.equal(failed.type, 'job.failed');
  assert.deepEqual(failed.data.error, { code: 'bad-model', message: 'm' });
  assert.equal(
    buildJobEvent({ id: 'j', state: 'cancelled', metrics: null, artifacts: [] }, 'http://x').type,
    'job.cancelled',
  );
  assert.throws(
    () => buildJobEvent({ id: 'j', state: 'running', metrics: null, artifacts: [] }, 'http://x'),
    /sends no webhook/,
  );
});

test('prepareJobWebhook checks the URL and secret and generates a secret when none is given', async () => {
  const { prepareJobWebhook } = await import('../../../packages/platform/webhooks/job-webhook.js');
  const gen = prepareJobWebhook({ url: 'https://hooks.example.com/a' });
  assert.ok(gen.ok && gen.secretGenerated && gen.secret.startsWith('whsec_'));
  const given = prepareJobWebhook({ url: 'https://hooks.example.com/a', secret: gen.ok ? gen.secret : '' });
  assert.ok(given.ok && !given.secretGenerated);
  assert.deepEqual(prepareJobWebhook({ url: 'file:///etc/passwd' }), {
    ok: false,
    code: 'invalid-webhook-url',
    message: 'webhook url must be http or https, got "file:"',
  });
  const bad = prepareJobWebhook({ url: 'https://h.example.com/', secret: 'hunter2' });
  assert.ok(!bad.ok && bad.code === 'invalid-webhook-secret');
});
