import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { assertWebhookSecret, generateWebhookSecret } from '../../../packages/platform/webhooks/secret.js';
import { newWebhookMessageId, signWebhook, verifyWebhook } from '../../../packages/platform/webhooks/sign.js';

test('a generated secret is whsec_ + base64 of 32 bytes and passes validation', () => {
  const s = generateWebhookSecret();
  assert.match(s, /^whsec_[A-Za-z0-9+/]+=*$/);
  assert.equal(Buffer.from(s.slice(6), 'base64').length, 32);
  assertWebhookSecret(s);
  assert.notEqual(generateWebhookSecret(), s);
});

test('malformed secrets are rejected with a clear error', () => {
  assert.throws(() => assertWebhookSecret('abc'), /must start with "whsec_"/);
  assert.throws(() => assertWebhookSecret('whsec_not base64!'), /base64/);
  assert.throws(() => assertWebhookSecret('whsec_' + Buffer.alloc(8).toString('base64')), /24–64 bytes, got 8/);
});

test('the signature is v1,base64(HMAC-SHA256(key, id.timestamp.body)), computed independently', () => {
  const secret = generateWebhookSecret();
  const id = newWebhookMessageId();
  const at = new Date('2026-01-02T03:04:05.678Z');
  const body = JSON.stringify({ type: 'job.succeeded', data: { jobId: 'j1' } });
  const h = signWebhook(secret, id, at, body);
  assert.equal(h['webhook-id'], id);
  assert.equal(h['webhook-timestamp'], String(Math.floor(at.getTime() / 1000)));
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${h['webhook-timestamp']}.${body}`).digest('base64');
  assert.equal(h['webhook-signature'], `v1,${expected}`);
});

test('a receiver verifies with the secret; a tampered body, a wrong secret or a stale timestamp fail', () => {
  const secret = generateWebhookSecret();
  const id = newWebhookMessageId();
  const body = '{"type":"job.failed"}';
  const headers = { ...signWebhook(secret, id, new Date(), body) };
  assert.deepEqual(verifyWebhook(secret, body, headers), { type: 'job.failed' });
  assert.deepEqual(new Webhook(secret).verify(body, headers), { type: 'job.failed' });
  assert.throws(() => verifyWebhook(secret, body.replace('failed', 'succeeded'), headers));
  assert.throws(() => verifyWebhook(generateWebhookSecret(), body, headers));
  const old = signWebhook(secret, id, new Date(Date.now() - 3600_000), body);
  assert.throws(() => verifyWebhook(secret, body, { ...old }), /too old/i);
});
