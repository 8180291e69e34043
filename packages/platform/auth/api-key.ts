// API key format and hashing. A key is `oc_` + 32 random bytes in base64url (256 bits): high entropy, so a single
// SHA-256 is an adequate at-rest hash (no salt/stretching needed: it cannot be brute-forced). Only the hash and a
// short display prefix are stored; the key itself is shown once, when created.
import { createHash, randomBytes } from 'node:crypto';

export const API_KEY_PREFIX = 'oc_';
const KEY_PATTERN = /^oc_[A-Za-z0-9_-]{43}$/;
/** Characters kept for display ("oc_AbCdEfGh…"): enough to tell keys apart, useless to an attacker. */
const DISPLAY_CHARS = 11;

export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(32).toString('base64url');
}

/** Cheap shape check done before any database lookup. */
export function isWellFormedApiKey(key: string): boolean {
  return KEY_PATTERN.test(key);
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function displayPrefix(key: string): string {
  return key.slice(0, DISPLAY_CHARS);
}

/** Extracts the key from an `Authorization: Bearer <key>` header value, or null. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return m ? m[1] : null;
}
