// Issue 8 access rules of a key that are pure functions of the record and the request: the
// IP allowlist (CIDR, IPv4 and IPv6, parsed with ipaddr.js) and expiry. The control API
// normalises what it stores with the same functions the gateway matches with.

import ipaddr from 'ipaddr.js';
import type { KeyRecord } from '@tollgate/events';

/** A CIDR the control API refuses, with the reason (the message names the entry). */
export class CidrError extends Error {
  override name = 'CidrError';
}

/**
 * The canonical text of a CIDR: the network address (host bits cleared) and the prefix
 * length, IPv6 in RFC 5952 form; e.g. `10.1.2.3/8` → `10.0.0.0/8`, `2001:DB8:0:0::1/32` →
 * `2001:db8::/32`. A bare address is a single host (`/32`, `/128`). IPv4 must be four decimal
 * parts (`10/8` is refused: its reading differs between tools).
 * @throws CidrError when `text` is no IPv4 or IPv6 CIDR
 */
export function normaliseCidr(text: string): string {
  const t = text.trim();
  const withLength = t.includes('/') ? t : `${t}/${t.includes(':') ? 128 : 32}`;
  if (ipaddr.IPv4.isValidCIDRFourPartDecimal(withLength)) {
    const [, len] = ipaddr.IPv4.parseCIDR(withLength);
    return `${ipaddr.IPv4.networkAddressFromCIDR(withLength).toString()}/${len}`;
  }
  if (ipaddr.IPv6.isValidCIDR(withLength) && !withLength.includes('%')) {
    const [addr, len] = ipaddr.IPv6.parseCIDR(withLength);
    // `::ffff:a.b.c.d/n` (n ≥ 96) names IPv4 addresses: stored as IPv4, the form clients are matched in.
    if (addr.isIPv4MappedAddress() && len >= 96) return normaliseCidr(`${addr.toIPv4Address().toString()}/${len - 96}`);
    return `${ipaddr.IPv6.networkAddressFromCIDR(withLength).toRFC5952String()}/${len}`;
  }
  throw new CidrError(`${JSON.stringify(text)} is not an IPv4 or IPv6 CIDR (e.g. 203.0.113.0/24, 2001:db8::/32)`);
}

/**
 * Whether `address` (the client address as the server sees it, per TRUST_PROXY) lies in one
 * of `allowlist`'s CIDRs. An empty or absent list allows every address. An IPv4-mapped IPv6
 * address (`::ffff:192.0.2.1`, what a dual-stack socket reports) is matched as its IPv4.
 * Fails closed: an unparsable address matches nothing, and an entry that does not parse
 * (never written by the control API) is skipped.
 */
export function ipAllowed(allowlist: readonly string[] | undefined, address: string | undefined): boolean {
  if (!allowlist || allowlist.length === 0) return true;
  if (!address || !ipaddr.isValid(address)) return false;
  const ip = ipaddr.process(address);
  for (const entry of allowlist) {
    let range: [ipaddr.IPv4 | ipaddr.IPv6, number];
    try {
      range = ipaddr.parseCIDR(entry);
    } catch {
      continue;
    }
    if (range[0].kind() === ip.kind() && ip.match(range)) return true;
  }
  return false;
}

/** Whether the key has expired at `now` (epoch ms): `expires_at` is the first refused instant. */
export function keyExpired(key: Pick<KeyRecord, 'expires_at'>, now: number): boolean {
  return key.expires_at !== null && key.expires_at !== undefined && now >= key.expires_at;
}
