// Webhook secrets in the Standard Webhooks form `whsec_<base64 key>`. A secret the caller supplies is checked here so a
// typo fails at job creation, not silently at the receiver.
import { randomBytes } from 'node:crypto';

const PREFIX = 'whsec_';
/** Standard Webhooks recommends 24–64 random bytes; 32 is what we generate. */
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;

export class WebhookConfigError extends Error {
  override readonly name = 'WebhookConfigError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A fresh `whsec_` secret with 32 random bytes. */
export function generateWebhookSecret(): string {
  return PREFIX + randomBytes(32).toString('base64');
}

/** Throws WebhookConfigError unless `secret` is `whsec_` + standard base64 of 24–64 bytes. */
export function assertWebhookSecret(secret: string): void {
  if (!secret.startsWith(PREFIX)) {
    throw new WebhookConfigError('invalid-webhook-secret', 'webhook secret must start with "whsec_"');
  }
  const b64 = secret.slice(PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) {
    throw new WebhookConfigError('invalid-webhook-secret', 'webhook secret must be "whsec_" followed by base64');
  }
  const bytes = Buffer.from(b64, 'base64').length;
  if (bytes < MIN_KEY_BYTES || bytes > MAX_KEY_BYTES) {
    throw new WebhookConfigError(
      'invalid-webhook-secret',
      `webhook secret key must be ${MIN_KEY_BYTES}–${MAX_KEY_BYTES} bytes, got ${bytes}`,
    );
  }
}
