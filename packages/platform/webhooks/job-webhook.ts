// A job's `webhook: {url, secret?}` as submitted: the URL's shape is checked now (the SSRF policy is applied at send
// time, after DNS), a given secret must be a valid whsec_ secret, and a missing one is generated. The caller stores
// both on the job and returns the secret in the response only when it was generated (it is never shown again).
import { parseWebhookUrl } from './resolve-target.js';
import { assertWebhookSecret, generateWebhookSecret, WebhookConfigError } from './secret.js';

export type PreparedWebhook =
  | { ok: true; url: string; secret: string; secretGenerated: boolean }
  | { ok: false; code: 'invalid-webhook-url' | 'invalid-webhook-secret'; message: string };

export function prepareJobWebhook(input: { url: string; secret?: string }): PreparedWebhook {
  const parsed = parseWebhookUrl(input.url);
  if (!parsed.ok) return { ok: false, code: 'invalid-webhook-url', message: parsed.message };
  if (input.secret !== undefined) {
    try {
      assertWebhookSecret(input.secret);
    } catch (e) {
      if (e instanceof WebhookConfigError) return { ok: false, code: 'invalid-webhook-secret', message: e.message };
      throw e;
    }
    return { ok: true, url: parsed.url.toString(), secret: input.secret, secretGenerated: false };
  }
  return { ok: true, url: parsed.url.toString(), secret: generateWebhookSecret(), secretGenerated: true };
}
