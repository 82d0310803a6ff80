import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from './config.ts';

test('defaults run every role embedded on port 8080', () => {
  const c = loadConfig({});
  assert.deepEqual(c.roles, ['gateway', 'aggregator', 'control']);
  assert.equal(c.port, 8080);
  assert.equal(c.dataDir, './data');
  assert.equal(c.kafka, undefined);
  assert.equal(c.redis, undefined);
  assert.equal(c.upstream.url, 'https://api.anthropic.com');
  assert.equal(c.bodyLimitBytes, 32 * 1024 * 1024);
});

const DIST = { REDIS_URL: 'redis://127.0.0.1:6379', KAFKA_BROKERS: '127.0.0.1:9092', KEY_HASH_SECRET: 'k'.repeat(32), ADMIN_TOKEN: 'a'.repeat(32) };

test('--roles wins over TOLLGATE_ROLES', () => {
  const c = loadConfig({ ...DIST, TOLLGATE_ROLES: 'control' }, ['--roles', 'gateway,aggregator']);
  assert.deepEqual(c.roles, ['gateway', 'aggregator']);
});

test('splitting roles, or half a distributed setup, is refused', () => {
  assert.throws(() => loadConfig({ TOLLGATE_ROLES: 'gateway' }), /  - TOLLGATE_ROLES: roles can run in separate processes only/);
  // named as given: --roles on the command line is named --roles (a new user set no TOLLGATE_ROLES)
  assert.throws(() => loadConfig({}, ['--roles', 'gateway']), /  - --roles: roles can run in separate processes only/);
  assert.throws(() => loadConfig(DIST, ['--roles', 'gateway,billing']), /  - --roles: /);
  assert.throws(() => loadConfig({ ...DIST, TOLLGATE_ROLES: 'billing' }), /  - TOLLGATE_ROLES: /);
  assert.throws(() => loadConfig({ ...DIST, REDIS_URL: undefined }), /REDIS_URL: distributed mode needs both/);
  const c = loadConfig({ ...DIST, AGGREGATOR_GROUPS: 'ledger', LEDGER_CONSUMERS: '2' }, ['--roles=aggregator']);
  assert.deepEqual(c.aggregator, { groups: ['ledger'], ledgerConsumers: 2 });
  assert.throws(() => loadConfig({ ...DIST, AGGREGATOR_GROUPS: 'ledger,billing' }), /AGGREGATOR_GROUPS: unknown group/);
});

test('every bad value is reported with its variable name', () => {
  assert.throws(
    () => loadConfig({ PORT: 'eighty', UPSTREAM_URL: 'nope', TOLLGATE_ROLES: 'gateway,billing', ADMIN_TOKEN: 'short' }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const text = err.problems.join('\n');
      for (const name of ['PORT', 'UPSTREAM_URL', 'TOLLGATE_ROLES', 'ADMIN_TOKEN']) assert.match(text, new RegExp(`^${name}:`, 'm'));
      assert.match(text, /billing/);
      return true;
    },
  );
});

test('distributed mode requires shared secrets', () => {
  assert.throws(() => loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', KAFKA_BROKERS: 'a:1' }), /KEY_HASH_SECRET: required[\s\S]*ADMIN_TOKEN: required/);
  const c = loadConfig({
    REDIS_URL: 'redis://127.0.0.1:6379', KAFKA_BROKERS: 'a:9092, b:9092',
    KEY_HASH_SECRET: 'x'.repeat(32), ADMIN_TOKEN: 'y'.repeat(32),
  });
  assert.deepEqual(c.kafka?.brokers, ['a:9092', 'b:9092']);
});

test('REDIS_AUTO_PIPELINING: on by default, true/false/1/0, anything else refused with the variable named', () => {
  assert.equal(loadConfig(DIST).redis?.autoPipelining, true);
  assert.equal(loadConfig({ ...DIST, REDIS_AUTO_PIPELINING: 'false' }).redis?.autoPipelining, false);
  assert.equal(loadConfig({ ...DIST, REDIS_AUTO_PIPELINING: '0' }).redis?.autoPipelining, false);
  assert.equal(loadConfig({ ...DIST, REDIS_AUTO_PIPELINING: 'true' }).redis?.autoPipelining, true);
  assert.throws(() => loadConfig({ ...DIST, REDIS_AUTO_PIPELINING: 'yes' }), /REDIS_AUTO_PIPELINING: /);
});

test('REDIS_CLUSTER_NODES: parsed into host/port seeds for the ledger, needs REDIS_URL, refuses a malformed list', () => {
  assert.deepEqual(loadConfig({ ...DIST, REDIS_CLUSTER_NODES: '127.0.0.1:7001, 127.0.0.1:7002,redis-3:7003' }).redis, {
    url: 'redis://127.0.0.1:6379', prefix: 'tg:', autoPipelining: true,
    clusterNodes: [{ host: '127.0.0.1', port: 7001 }, { host: '127.0.0.1', port: 7002 }, { host: 'redis-3', port: 7003 }],
  });
  assert.deepEqual(loadConfig(DIST).redis, { url: 'redis://127.0.0.1:6379', prefix: 'tg:', autoPipelining: true });
  assert.throws(() => loadConfig({ ...DIST, REDIS_CLUSTER_NODES: '127.0.0.1:7001,127.0.0.1' }),
    /REDIS_CLUSTER_NODES: expected host:port\[,host:port…\] such as 127\.0\.0\.1:7001,127\.0\.0\.1:7002, got "127\.0\.0\.1:7001,127\.0\.0\.1"/);
  assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:7001' }), /REDIS_CLUSTER_NODES: needs REDIS_URL too/);
});

test('WRITE_AHEAD_RESERVE_MB: 64 MiB by default, in bytes; 0 turns the watch off; a fraction, a negative or a word is refused with the variable named', () => {
  assert.equal(loadConfig({}).writeAheadReserveBytes, 64 * 1_048_576);
  assert.equal(loadConfig({ WRITE_AHEAD_RESERVE_MB: '0' }).writeAheadReserveBytes, 0);
  assert.equal(loadConfig({ WRITE_AHEAD_RESERVE_MB: '1024' }).writeAheadReserveBytes, 1_073_741_824);
  for (const bad of ['1.5', '-1', 'lots']) {
    assert.throws(() => loadConfig({ WRITE_AHEAD_RESERVE_MB: bad }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.problems.join('\n'), /^WRITE_AHEAD_RESERVE_MB:/m);
      return true;
    }, bad);
  }
});
