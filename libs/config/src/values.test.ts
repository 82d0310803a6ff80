// Configuration values are bounded at start, each problem named by variable with the rule that
// fixes it: numbers out of range or not numbers, URLs of the wrong scheme, an empty CORS list,
// and values that land in every event (GATEWAY_ID) or in Kafka topic names, held to the same
// bounds the event decoder and Kafka enforce, so a process never starts only to have every
// event it writes quarantined.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from './config.ts';

/** The problems loadConfig reports for `env`, exactly. */
function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail(`accepted ${JSON.stringify(env)}`);
}

test('numbers out of range or not whole numbers: "expected a whole number from X to Y, got …"', () => {
  assert.deepEqual(problems({ PORT: '99999' }), ['PORT: expected a whole number from 0 to 65535, got "99999"']);
  assert.deepEqual(problems({ RATE_LIMIT_RPM: '-1' }), ['RATE_LIMIT_RPM: expected a whole number from 1 to 10000000, got "-1"']);
  assert.deepEqual(problems({ UPSTREAM_TIMEOUT_MS: '600000000' }), ['UPSTREAM_TIMEOUT_MS: expected a whole number from 1000 to 3600000, got "600000000"']);
  assert.deepEqual(problems({ MAX_CONNECTIONS: '0' }), ['MAX_CONNECTIONS: expected a whole number from 16 to 1000000, got "0"']);
  assert.deepEqual(problems({ BODY_LIMIT_BYTES: '1kb' }), ['BODY_LIMIT_BYTES: expected a whole number from 1024 to 268435456, got "1kb"']);
  assert.deepEqual(problems({ PORT: '80.5' }), ['PORT: expected a whole number from 0 to 65535, got "80.5"']);
  assert.deepEqual(problems({ PORT: '1e3' }), ['PORT: expected a whole number from 0 to 65535, got "1e3"']);
  assert.deepEqual(problems({ PORT: 'eighty' }), ['PORT: expected a whole number from 0 to 65535, got "eighty"']);
  // The ends of a range are in it; surrounding spaces are forgiven.
  assert.equal(loadConfig({ PORT: '65535' }).port, 65535);
  assert.equal(loadConfig({ PORT: ' 0 ' }).port, 0);
  assert.equal(loadConfig({ MAX_CONNECTIONS: '16' }).http.maxConnections, 16);
});

test('URLs of the wrong scheme are refused by name, without echoing the value', () => {
  assert.deepEqual(problems({ UPSTREAM_URL: 'ftp://x' }), ['UPSTREAM_URL: expected a URL such as https://api.anthropic.com (scheme http or https), got scheme "ftp"']);
  assert.deepEqual(problems({ UPSTREAM_URL: 'not a url' }), ['UPSTREAM_URL: expected a URL such as https://api.anthropic.com (scheme http or https)']);
  assert.deepEqual(problems({ CLICKHOUSE_URL: 'file:///etc/passwd' }), ['CLICKHOUSE_URL: expected a URL such as http://host:port (scheme http or https), got scheme "file"']);
  assert.deepEqual(problems({ OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://collector:4317' }), ['OTEL_EXPORTER_OTLP_ENDPOINT: expected a URL such as http://host:port (scheme http or https), got scheme "grpc"']);
  const redis = problems({ REDIS_URL: 'http://:s3cret@127.0.0.1:6379', KAFKA_BROKERS: 'k:9092', KEY_HASH_SECRET: 'k'.repeat(32), ADMIN_TOKEN: 'a'.repeat(32) });
  assert.deepEqual(redis, ['REDIS_URL: expected a URL such as redis://127.0.0.1:6379 (scheme redis or rediss), got scheme "http"']);
  assert.equal(loadConfig({ UPSTREAM_URL: 'http://127.0.0.1:4000/' }).upstream.url, 'http://127.0.0.1:4000');
});

test('CLICKHOUSE_URL is the server\'s address alone: a path (a database) or a query string is refused by name, the value never echoed; a user and password in it are accepted', () => {
  // Kind: a value the config accepted and a later stage refused (the client threw "Unknown URL
  // parameters" with a stack at the first query; a database path broke the first migration).
  const path = 'CLICKHOUSE_URL: has a path; give the server\'s address alone (http://host:port) and the database in CLICKHOUSE_DATABASE';
  const query = 'CLICKHOUSE_URL: has a query string or fragment; give the server\'s address alone (http://host:port; a user and password in it, or in CLICKHOUSE_USER and CLICKHOUSE_PASSWORD)';
  for (const [v, expected] of [
    ['http://u:s3cret@ch:8123/tollgate', [path]], ['https://ch:8443/a/b', [path]],
    ['http://u:s3cret@ch:8123/?request_timeout=60000', [query]], ['http://ch:8123?x=1', [query]], ['http://ch:8123/#f', [query]], ['http://ch:8123?', [query]],
    ['http://ch:8123/db?x=1', [path, query]],
  ] as const) {
    const got = problems({ CLICKHOUSE_URL: v });
    assert.deepEqual(got, expected, v);
    assert.doesNotMatch(got.join('\n'), /s3cret/);
  }
  for (const [v, origin] of [['http://ch:8123', 'http://ch:8123'], ['http://ch:8123/', 'http://ch:8123'], [' http://127.0.0.1:8123 ', 'http://127.0.0.1:8123']] as const) {
    assert.deepEqual(loadConfig({ CLICKHOUSE_URL: v }).clickhouse, { url: origin, username: undefined, password: undefined, database: 'tollgate' }, v);
  }
  assert.deepEqual(loadConfig({ CLICKHOUSE_URL: 'http://ch:8123', CLICKHOUSE_USER: 'tg', CLICKHOUSE_PASSWORD: 'p w' }).clickhouse,
    { url: 'http://ch:8123', username: 'tg', password: 'p w', database: 'tollgate' });
});

test('CLICKHOUSE_URL credentials: percent-decoded once into username and password (the URL passed on is the origin); a bare % is refused by name; credentials in the URL and in the variables at once are refused', () => {
  // Kind: a value the config accepted and a later stage refused (the client's decodeURIComponent
  // threw URIError with a stack at start), or read differently than the message names (the
  // client let the URL's user win over CLICKHOUSE_USER, silently).
  for (const [v, username, password] of [
    ['https://u:p%40ss@ch.example.com:8443', 'u', 'p@ss'], ['http://u:s3cr%3At%25@ch:8123/', 'u', 's3cr:t%'], ['http://default:@ch:8123', 'default', ''],
    ['http://:only-pw@ch:8123', undefined, 'only-pw'], ['http://u:p@ss@ch:8123', 'u', 'p@ss'],
  ] as const) {
    assert.deepEqual(loadConfig({ CLICKHOUSE_URL: v }).clickhouse, { url: v.startsWith('https') ? 'https://ch.example.com:8443' : 'http://ch:8123', username, password, database: 'tollgate' }, v);
  }
  const encoding = 'CLICKHOUSE_URL: its user or password is not valid percent-encoding (write % as %25, and @ : / ? # as %40 %3A %2F %3F %23)';
  for (const v of ['http://u:Pw50%zzSECRET@ch:8123', 'http://u%E0:x@ch:8123', 'http://u:%@ch:8123']) {
    const got = problems({ CLICKHOUSE_URL: v });
    assert.deepEqual(got, [encoding], v);
    assert.doesNotMatch(got.join('\n'), /SECRET/);
  }
  const twice = 'CLICKHOUSE_URL: carries a user or password, and so does CLICKHOUSE_USER or CLICKHOUSE_PASSWORD; give them in one place';
  assert.deepEqual(problems({ CLICKHOUSE_URL: 'http://u:p@ch:8123', CLICKHOUSE_USER: 'other' }), [twice]);
  assert.deepEqual(problems({ CLICKHOUSE_URL: 'http://u@ch:8123', CLICKHOUSE_PASSWORD: 'x' }), [twice]);
});

test('CORS_ORIGINS that names no origin is refused (unset turns CORS off)', () => {
  for (const v of [',', ' , ,']) {
    assert.deepEqual(problems({ CORS_ORIGINS: v }), ['CORS_ORIGINS: must name at least one origin such as https://app.example.com, or * alone; unset it to turn CORS off'], v);
  }
});

test('GATEWAY_ID is held to the event decoder\'s bound for gateway_id: at most 256 characters, well-formed, no control characters', () => {
  assert.deepEqual(problems({ GATEWAY_ID: 'gw-'.repeat(100) }), ['GATEWAY_ID: must be at most 256 characters (it is stored in every usage event)']);
  assert.deepEqual(problems({ GATEWAY_ID: 'gw\u0001a' }), ['GATEWAY_ID: must not contain control characters (it is stored in every usage event)']);
  assert.deepEqual(problems({ GATEWAY_ID: 'gw-\ud800' }), ['GATEWAY_ID: must be well-formed Unicode (it contains a lone surrogate) (it is stored in every usage event)']);
  assert.equal(loadConfig({ GATEWAY_ID: 'g'.repeat(256) }).gatewayId, 'g'.repeat(256));
});

test('KAFKA_TOPIC_PREFIX is held to Kafka\'s 249-character topic names: at most 238 before "dead-letter"', () => {
  assert.deepEqual(problems({ KAFKA_TOPIC_PREFIX: 'p'.repeat(239) }),
    ['KAFKA_TOPIC_PREFIX: must be at most 238 characters (Kafka topic names are at most 249, and "dead-letter" follows the prefix)']);
  assert.deepEqual(problems({ KAFKA_TOPIC_PREFIX: 'team/a.' }), ['KAFKA_TOPIC_PREFIX: letters, digits, . _ - only (Kafka topic names)']);
  assert.equal(loadConfig({ KAFKA_TOPIC_PREFIX: 'p'.repeat(238) }).database, 'tollgate');
  assert.deepEqual(problems({ REDIS_PREFIX: 'tg{a}:' }), ['REDIS_PREFIX: letters, digits, : . _ - only']);
});

test('every problem at once, each by name', () => {
  assert.deepEqual(problems({ PORT: '99999', UPSTREAM_URL: 'ftp://x', CORS_ORIGINS: ',', GATEWAY_ID: 'x'.repeat(300) }), [
    'PORT: expected a whole number from 0 to 65535, got "99999"',
    'GATEWAY_ID: must be at most 256 characters (it is stored in every usage event)',
    'UPSTREAM_URL: expected a URL such as https://api.anthropic.com (scheme http or https), got scheme "ftp"',
    'CORS_ORIGINS: must name at least one origin such as https://app.example.com, or * alone; unset it to turn CORS off',
  ]);
});

test('a value outside a fixed set is refused with the set and the value; surrounding spaces and case are forgiven; KAFKA_COMPRESSION names one of the codecs KafkaLog produces with: gzip (default), zstd, none', () => {
  const distributed = { KAFKA_BROKERS: 'k:9092', REDIS_URL: 'redis://127.0.0.1:6379', KEY_HASH_SECRET: 'k'.repeat(32), ADMIN_TOKEN: 'a'.repeat(32) };
  assert.equal(loadConfig(distributed).kafka!.compression, 'gzip');
  assert.equal(loadConfig({ ...distributed, KAFKA_COMPRESSION: ' ZSTD\n' }).kafka!.compression, 'zstd');
  assert.equal(loadConfig({ LOG_LEVEL: 'Debug ' }).logLevel, 'debug');
  for (const c of ['zstd', 'gzip', 'none'] as const) assert.equal(loadConfig({ ...distributed, KAFKA_COMPRESSION: c }).kafka!.compression, c);
  assert.deepEqual(problems({ LOG_LEVEL: 'verbose' }), ['LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"']);
  assert.deepEqual(problems({ REDIS_AUTO_PIPELINING: 'yes' }), ['REDIS_AUTO_PIPELINING: expected one of true, false, 1, 0, got "yes"']);
  assert.deepEqual(problems({ ...distributed, KAFKA_COMPRESSION: 'lz4' }), ['KAFKA_COMPRESSION: expected one of gzip, zstd, none, got "lz4"']);
});

test('KAFKA_LINGER_MS: how long usage events wait for company before they are produced, 20 ms by default, 0 to 1000', () => {
  const distributed = { KAFKA_BROKERS: 'k:9092', REDIS_URL: 'redis://127.0.0.1:6379', KEY_HASH_SECRET: 'k'.repeat(32), ADMIN_TOKEN: 'a'.repeat(32) };
  assert.equal(loadConfig(distributed).kafka!.lingerMs, 20);
  assert.equal(loadConfig({ ...distributed, KAFKA_LINGER_MS: ' 0 ' }).kafka!.lingerMs, 0);
  assert.equal(loadConfig({ ...distributed, KAFKA_LINGER_MS: '1000' }).kafka!.lingerMs, 1000);
  assert.deepEqual(problems({ ...distributed, KAFKA_LINGER_MS: '1001' }), ['KAFKA_LINGER_MS: expected a whole number from 0 to 1000, got "1001"']);
  assert.deepEqual(problems({ ...distributed, KAFKA_LINGER_MS: '5.5' }), ['KAFKA_LINGER_MS: expected a whole number from 0 to 1000, got "5.5"']);
});
