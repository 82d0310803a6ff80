// The access-rule helpers of issue 8 on ipaddr.js: what the control API stores (normaliseCidr)
// and what the gateway matches (ipAllowed, keyExpired), IPv4 and IPv6.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CidrError, ipAllowed, keyExpired, normaliseCidr } from '../src/index.ts';

test('CIDRs are stored canonical: network address, RFC 5952, bare address as a host, v4-mapped as IPv4', () => {
  const cases: Array<[string, string]> = [
    ['10.1.2.3/8', '10.0.0.0/8'],
    [' 192.0.2.77/24 ', '192.0.2.0/24'],
    ['192.0.2.7', '192.0.2.7/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['2001:DB8:0:0::1/32', '2001:db8::/32'],
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1/128'],
    ['::1', '::1/128'],
    ['::/0', '::/0'],
    ['::ffff:192.0.2.9/120', '192.0.2.0/24'],
  ];
  for (const [input, stored] of cases) assert.equal(normaliseCidr(input), stored, input);
});

test('malformed CIDRs are refused with a CidrError naming the entry', () => {
  for (const bad of ['10/8', '10.0.0/8', '300.1.1.1/8', '10.0.0.0/33', '2001:db8::/129', 'fe80::1%eth0/64', 'localhost', '', '10.0.0.0/', '1.2.3.4/-1']) {
    assert.throws(() => normaliseCidr(bad), (err: unknown) => err instanceof CidrError && err.message.startsWith(JSON.stringify(bad)), bad);
  }
});

test('ip allowlist matching: inside and outside, per family; an empty list allows all; unparsable fails closed', () => {
  const list = ['10.0.0.0/8', '2001:db8::/32'];
  assert.equal(ipAllowed(list, '10.255.0.1'), true);
  assert.equal(ipAllowed(list, '11.0.0.1'), false);
  assert.equal(ipAllowed(list, '2001:db8:ffff::1'), true);
  assert.equal(ipAllowed(list, '2001:db9::1'), false);
  // a dual-stack socket reports IPv4 clients as v4-mapped IPv6
  assert.equal(ipAllowed(list, '::ffff:10.1.1.1'), true);
  assert.equal(ipAllowed(list, '::ffff:11.1.1.1'), false);
  // families never cross: ::/0 does not admit IPv4, 0.0.0.0/0 does not admit IPv6
  assert.equal(ipAllowed(['::/0'], '192.0.2.1'), false);
  assert.equal(ipAllowed(['0.0.0.0/0'], '::1'), false);
  assert.equal(ipAllowed([], '192.0.2.1'), true);
  assert.equal(ipAllowed(undefined, '192.0.2.1'), true);
  assert.equal(ipAllowed(list, 'not-an-ip'), false);
  assert.equal(ipAllowed(list, undefined), false);
  assert.equal(ipAllowed(['garbage/8', '192.0.2.0/24'], '192.0.2.1'), true);
  assert.equal(ipAllowed(['garbage/8'], '192.0.2.1'), false);
});

test('expiry: refused from expires_at on, never without one', () => {
  assert.equal(keyExpired({ expires_at: 1000 }, 999), false);
  assert.equal(keyExpired({ expires_at: 1000 }, 1000), true);
  assert.equal(keyExpired({ expires_at: null }, Number.MAX_SAFE_INTEGER), false);
  assert.equal(keyExpired({}, Number.MAX_SAFE_INTEGER), false);
});
