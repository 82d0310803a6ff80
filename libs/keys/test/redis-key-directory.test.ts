// The KeyDirectory contract against a real Redis, bare and behind the in-process cache. The
// peer is a second directory on its own client, as another gateway or the control plane
// would be. Each case uses its own key prefix so runs can share one Redis.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { CachedKeyDirectory, RedisKeyDirectory } from '@tollgate/keys';
import { findRedis, requireRedis } from '../../../test/support/services.ts';
import { deleteKeysUnder } from '../../../test/support/redis.ts';
import { keyDirectoryContract } from './key-directory.contract.ts';

const url = await findRedis();

if (url === undefined) {
  // Skips loudly, or fails when services are required (CI).
  test('RedisKeyDirectory contract', async (t) => {
    await requireRedis(t);
  });
} else {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const peerClient = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  before(() => Promise.all([redis.connect(), peerClient.connect()]));
  after(() => Promise.all([redis.quit(), peerClient.quit()]));

  keyDirectoryContract('redis', async () => {
    const prefix = `test:${randomUUID()}:`;
    return {
      directory: new RedisKeyDirectory({ redis, prefix }),
      peer: new RedisKeyDirectory({ redis: peerClient, prefix }),
      propagationMs: 0,
      cleanup: () => deleteKeysUnder(redis, prefix),
    };
  });

  // The default TTL (500 ms): proves a revocation elsewhere lands within the 1 s promise.
  keyDirectoryContract('cached(redis)', async () => {
    const prefix = `test:${randomUUID()}:`;
    const directory = new CachedKeyDirectory(new RedisKeyDirectory({ redis, prefix }));
    return {
      directory,
      peer: new RedisKeyDirectory({ redis: peerClient, prefix }),
      propagationMs: 500,
      cleanup: async () => {
        await directory.close();
        await deleteKeysUnder(redis, prefix);
      },
    };
  });

  describe('RedisKeyDirectory specifics', () => {
    test('layout: json records, a hash index and a per-account index under the prefix', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deleteKeysUnder(redis, prefix));
      const directory = new RedisKeyDirectory({ redis, prefix });
      const account = { id: 'a1', name: 'A', status: 'active' as const, created_at: 1, version: 1 };
      const key = {
        id: 'k1', account_id: 'a1', name: 'n', prefix: 'sk-tg-x', hash: 'abc', status: 'active' as const,
        created_at: 1, revoked_at: null, version: 1,
      };
      await directory.putAccount(account);
      await directory.putKey(key);
      assert.deepEqual(JSON.parse((await redis.hget(`${prefix}accounts`, 'a1'))!), account);
      assert.deepEqual(JSON.parse((await redis.hget(`${prefix}keys`, 'k1'))!), key);
      assert.equal(await redis.hget(`${prefix}keyhash`, 'abc'), 'k1');
      assert.deepEqual(await redis.smembers(`${prefix}keysof:a1`), ['k1']);
    });

    test('a key moved to another hash is no longer found by the old one', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deleteKeysUnder(redis, prefix));
      const directory = new RedisKeyDirectory({ redis, prefix });
      await directory.putAccount({ id: 'a1', name: 'A', status: 'active', created_at: 1, version: 1 });
      const key = {
        id: 'k1', account_id: 'a1', name: 'n', prefix: 'sk-tg-x', hash: 'old', status: 'active' as const,
        created_at: 1, revoked_at: null, version: 1,
      };
      await directory.putKey(key);
      await directory.putKey({ ...key, hash: 'new', version: 2 });
      assert.equal(await directory.byHash('old'), undefined);
      assert.equal((await directory.byHash('new'))?.key.version, 2);
    });

    test('concurrent writers: only the highest version survives', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deleteKeysUnder(redis, prefix));
      const a = new RedisKeyDirectory({ redis, prefix });
      const b = new RedisKeyDirectory({ redis: peerClient, prefix });
      const versions = Array.from({ length: 50 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
      const applied = await Promise.all(versions.map((version, i) =>
        (i % 2 ? a : b).putAccount({ id: 'x', name: `v${version}`, status: 'active', created_at: 1, version })));
      assert.ok(applied.includes(true));
      assert.deepEqual(await a.account('x'), { id: 'x', name: 'v50', status: 'active', created_at: 1, version: 50 });
    });

    test('close() leaves the caller\'s client open', async () => {
      await new RedisKeyDirectory({ redis, prefix: `test:${randomUUID()}:` }).close();
      assert.equal(await redis.ping(), 'PONG');
    });
  });
}
