// Resolves a webhook URL once, at send time, and checks every address it resolves to. The caller connects to the
// returned address (never resolving again), which closes the DNS-rebinding window between check and connect.
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { checkAddress, isHostAllowed, type AllowList } from './address-policy.js';

export interface ResolvedTarget {
  url: URL;
  /** The checked address to connect to. */
  address: string;
  family: 4 | 6;
}

export type ResolveOutcome =
  | { ok: true; target: ResolvedTarget }
  | { ok: false; code: 'invalid-url' | 'ssrf-refused' | 'dns-failed'; message: string; retryable: boolean };

export type Lookup = (hostname: string) => Promise<{ address: string; family: number }[]>;

const systemLookup: Lookup = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/** Validates the URL's shape (http/https, no credentials); used at job creation and again at send time. */
export function parseWebhookUrl(raw: string): { ok: true; url: URL } | { ok: false; message: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: `webhook url "${raw}" is not a valid URL` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, message: `webhook url must be http or https, got "${url.protocol}"` };
  }
  if (url.username || url.password) return { ok: false, message: 'webhook url must not contain credentials' };
  if (!url.hostname) return { ok: false, message: 'webhook url has no host' };
  return { ok: true, url };
}

export async function resolveWebhookTarget(
  raw: string,
  allow: AllowList,
  lookup: Lookup = systemLookup,
): Promise<ResolveOutcome> {
  const parsed = parseWebhookUrl(raw);
  if (!parsed.ok) return { ok: false, code: 'invalid-url', message: parsed.message, retryable: false };
  const url = parsed.url;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: { address: string; family: number }[];
  if (isIP(host)) {
    addresses = [{ address: host, family: isIP(host) }];
  } else {
    try {
      addresses = await lookup(host);
    } catch (e) {
      // Resolution failures are usually transient (receiver's DNS down): retry on the schedule.
      return {
        ok: false,
        code: 'dns-failed',
        message: `cannot resolve ${host}: ${(e as Error).message}`,
        retryable: true,
      };
    }
    if (addresses.length === 0) {
      return { ok: false, code: 'dns-failed', message: `${host} resolved to no address`, retryable: true };
    }
  }
  if (!isHostAllowed(host, allow)) {
    // Every address must pass: a name resolving to one public and one private address is refused outright.
    for (const a of addresses) {
      const verdict = checkAddress(a.address, allow);
      if (!verdict.allowed) {
        return {
          ok: false,
          code: 'ssrf-refused',
          message:
            `refused: ${host} resolves to ${a.address} (${verdict.range}); ` +
            'add the host or a CIDR to WEBHOOK_ALLOW_HOSTS to allow it',
          retryable: false,
        };
      }
    }
  }
  const first = addresses[0];
  return { ok: true, target: { url, address: first.address, family: first.family === 6 ? 6 : 4 } };
}
