// SSRF policy for webhook targets: only globally routable unicast addresses are contacted, unless the operator's
// allow-list (WEBHOOK_ALLOW_HOSTS: hostnames, IPs and CIDRs, comma-separated) names the host or the address.
// Deny by default: anything ipaddr.js does not classify as plain `unicast` (loopback, private, link-local incl. the
// 169.254.169.254 metadata address, unique-local fc00::/7, CGNAT 100.64/10, unspecified, multicast, broadcast,
// reserved, documentation, and IPv6 forms that embed an IPv4 address: ::ffff:a.b.c.d, 64:ff9b::/96, 6to4, Teredo)
// is refused.
import ipaddr from 'ipaddr.js';

export interface AllowList {
  /** Lower-cased hostnames (or IP literals as written) that may be contacted whatever they resolve to. */
  hosts: Set<string>;
  /** CIDR ranges whose addresses may be contacted. */
  cidrs: [ipaddr.IPv4 | ipaddr.IPv6, number][];
}

export class AllowListError extends Error {
  override readonly name = 'AllowListError';
}

/** Parses "localhost, 10.0.0.0/8, ::1, hooks.internal" into an AllowList; throws AllowListError on a bad CIDR. */
export function parseAllowList(spec: string | undefined): AllowList {
  const list: AllowList = { hosts: new Set(), cidrs: [] };
  for (const raw of (spec ?? '').split(',')) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry.includes('/')) {
      try {
        list.cidrs.push(ipaddr.parseCIDR(entry));
      } catch {
        throw new AllowListError(`WEBHOOK_ALLOW_HOSTS: "${entry}" is not a valid CIDR`);
      }
    } else if (ipaddr.isValid(entry)) {
      const addr = ipaddr.parse(entry);
      list.cidrs.push([addr, addr.kind() === 'ipv4' ? 32 : 128]);
    } else {
      list.hosts.add(entry.replace(/^\[|\]$/g, ''));
    }
  }
  return list;
}

export type AddressVerdict = { allowed: true } | { allowed: false; range: string };

/** Classifies one resolved address. `range` names why it was refused (ipaddr.js range name). */
export function checkAddress(address: string, allow: AllowList): AddressVerdict {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(address);
  } catch {
    return { allowed: false, range: 'unparseable' };
  }
  // Judge ::ffff:a.b.c.d as the IPv4 address it reaches (it is refused below either way, but the range is clearer).
  const effective =
    parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()
      ? (parsed as ipaddr.IPv6).toIPv4Address()
      : parsed;
  for (const [net, bits] of allow.cidrs) {
    if (effective.kind() === net.kind() && effective.match(net, bits)) return { allowed: true };
    if (parsed.kind() === net.kind() && parsed.match(net, bits)) return { allowed: true };
  }
  const range = effective.range();
  if (range === 'unicast') {
    // ipaddr.js calls IPv4-compatible ::a.b.c.d (deprecated) plain unicast inside ::/96; refuse it explicitly.
    if (effective.kind() === 'ipv6' && isIpv4Compatible(effective as ipaddr.IPv6)) {
      return { allowed: false, range: 'ipv4Compatible' };
    }
    return { allowed: true };
  }
  return { allowed: false, range: parsed !== effective ? `ipv4Mapped(${range})` : range };
}

function isIpv4Compatible(addr: ipaddr.IPv6): boolean {
  const p = addr.parts;
  return p[0] === 0 && p[1] === 0 && p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0;
}

/** True when the URL's host is named in the allow-list (then its resolved addresses are not checked). */
export function isHostAllowed(hostname: string, allow: AllowList): boolean {
  return allow.hosts.has(hostname.toLowerCase().replace(/^\[|\]$/g, ''));
}
