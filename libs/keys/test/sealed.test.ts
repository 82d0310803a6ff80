// Sealed secrets (AES-256-GCM under an HKDF key from KEY_HASH_SECRET): what is stored never
// holds the secret in clear, and opens only with the same secret, purpose and context.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SealError, seal, unseal } from '../src/index.ts';

const SECRET = 'key-hash-secret-0123456789';

test('round trip: the sealed text holds no trace of the plaintext and differs on every call', () => {
  const plain = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const a = seal(plain, SECRET, 'webhook-secret', 'wh_1');
  const b = seal(plain, SECRET, 'webhook-secret', 'wh_1');
  assert.notEqual(a, b);
  assert.match(a, /^sealed1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
  assert.ok(!a.includes(plain) && !a.includes('MfKQ9r8GKYqr') && !Buffer.from(a).toString('base64').includes('MfKQ'));
  assert.equal(unseal(a, SECRET, 'webhook-secret', 'wh_1'), plain);
  assert.equal(unseal(b, SECRET, 'webhook-secret', 'wh_1'), plain);
});

test('tampering and mismatches fail closed: other secret, purpose, context, a flipped byte, not sealed at all', () => {
  const s = seal('whsec_abc', SECRET, 'webhook-secret', 'wh_1');
  const fails = (f: () => unknown) => assert.throws(f, SealError);
  fails(() => unseal(s, 'another-secret-0123456789', 'webhook-secret', 'wh_1'));
  fails(() => unseal(s, SECRET, 'upstream-credential', 'wh_1'));
  fails(() => unseal(s, SECRET, 'webhook-secret', 'wh_2'));
  const parts = s.split('.');
  const ct = Buffer.from(parts[2]!, 'base64url');
  ct[0] = ct[0]! ^ 1;
  fails(() => unseal([parts[0], parts[1], ct.toString('base64url'), parts[3]].join('.'), SECRET, 'webhook-secret', 'wh_1'));
  fails(() => unseal('whsec_abc', SECRET, 'webhook-secret', 'wh_1'));
  fails(() => seal('x', 'short', 'webhook-secret', 'wh_1'));
});
