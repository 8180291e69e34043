// Standard Webhooks signing (standardwebhooks.com) through the maintained `standardwebhooks` package: the signature is
// `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, with the id and timestamp sent in their own headers.
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** A message id: stays the same on every retry and redelivery so receivers can de-duplicate. */
export function newWebhookMessageId(): string {
  return 'msg_' + randomBytes(16).toString('base64url');
}

/** Headers for one attempt. `at` is the attempt time (receivers reject timestamps far from their clock). */
export function signWebhook(secret: string, messageId: string, at: Date, body: string): SignedHeaders {
  const signature = new Webhook(secret).sign(messageId, at, body);
  return {
    'webhook-id': messageId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': signature,
  };
}

/** Verifies like a receiver would (used by tests and by anyone embedding a receiver); throws on a bad signature. */
export function verifyWebhook(secret: string, body: string, headers: Record<string, string>): unknown {
  return new Webhook(secret).verify(body, headers);
}
