// deploy/services.sh's commands and its --no-cluster option, checked with the four service
// scripts replaced by stubs that record how they were called (no service is started).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '../..');

/** Runs a copy of deploy/services.sh beside stub service scripts: exit status, stdout, and the calls made, in order. */
function services(...args: string[]): { status: number | null; stdout: string; stderr: string; calls: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-services-sh-'));
  try {
    copyFileSync(join(ROOT, 'deploy/services.sh'), join(dir, 'services.sh'));
    for (const name of ['redis', 'kafka', 'clickhouse', 'redis-cluster']) {
      writeFileSync(join(dir, `${name}.sh`), `echo "${name} $*" >> "${join(dir, 'calls')}"\n`);
    }
    writeFileSync(join(dir, 'calls'), '');
    const r = spawnSync('bash', [join(dir, 'services.sh'), ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, calls: readFileSync(join(dir, 'calls'), 'utf8').split('\n').filter((l) => l !== '') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const ENV = 'KAFKA_BROKERS=127.0.0.1:9092\nREDIS_URL=redis://127.0.0.1:6379\nCLICKHOUSE_URL=http://127.0.0.1:8123\n';

test('services.sh up starts Redis, Kafka, the ClickHouse server and the Redis Cluster and prints the three variables; --no-cluster leaves the Cluster out of up, down and status', () => {
  // Kind: a user trying the distributed mode had no way to skip the test-only Redis Cluster.
  const full = services('up');
  assert.deepEqual([full.status, full.stdout, full.calls], [0, ENV, ['redis start', 'kafka start', 'clickhouse start', 'redis-cluster start']]);
  assert.match(full.stderr, /^redis cluster on 127\.0\.0\.1:7001,127\.0\.0\.1:7002,127\.0\.0\.1:7003 /);
  const up = services('up', '--no-cluster');
  assert.deepEqual([up.status, up.stdout, up.calls], [0, ENV, ['redis start', 'kafka start', 'clickhouse start']]);
  assert.doesNotMatch(up.stderr, /redis cluster/);
  assert.deepEqual(services('down', '--no-cluster').calls, ['clickhouse stop', 'kafka stop', 'redis stop']);
  assert.deepEqual(services('down').calls, ['redis-cluster stop', 'clickhouse stop', 'kafka stop', 'redis stop']);
  assert.deepEqual(services('status', '--no-cluster').calls, ['redis status', 'kafka status', 'clickhouse status']);
  const bad = services('up', '--bogus');
  assert.deepEqual([bad.status, bad.stdout, bad.calls], [2, '', []]);
  assert.equal(bad.stderr, 'deploy/services.sh: unknown option "--bogus"; expected --no-cluster (see bash deploy/services.sh --help)\n');
});

test('redis-cluster.sh REDIS_CLUSTER_PORTS: spaces, tabs, newlines or commas between ports; an empty list, a non-port, one out of range or one given twice is refused naming it, before anything starts', () => {
  // Kind: a port list in a shape the script did not split (a comma list became one "port" that
  // redis-server refused with a raw parse error, leaving a stray directory behind).
  const status = (ports: string) => {
    const state = mkdtempSync(join(tmpdir(), 'tollgate-rc-ports-'));
    try {
      const r = spawnSync('bash', [join(ROOT, 'deploy/redis-cluster.sh'), 'status'], {
        encoding: 'utf8', env: { PATH: process.env.PATH ?? '', REDIS_CLUSTER_PORTS: ports, TOLLGATE_DEPLOY_DIR: state },
      });
      return [r.status, r.stderr.replace(/^\[redis-cluster \+[\d.]+s\] /gm, '') + r.stdout];
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  };
  for (const ok of ['18901,18902,18903', '18901 18902\t18903', '18901\n18902\n18903', ' 18901 , 18902 ']) {
    assert.deepEqual(status(ok), [3, 'redis-cluster: stopped\n'], JSON.stringify(ok));
  }
  const hint = '(give ports separated by spaces or commas)';
  assert.deepEqual(status(' , '), [1, `ERROR: REDIS_CLUSTER_PORTS: no port given ${hint}\n`]);
  assert.deepEqual(status('18901 x'), [1, `ERROR: REDIS_CLUSTER_PORTS: "x" is not a port from 1 to 65535 ${hint}\n`]);
  assert.deepEqual(status('18901 99999'), [1, `ERROR: REDIS_CLUSTER_PORTS: "99999" is not a port from 1 to 65535 ${hint}\n`]);
  assert.deepEqual(status('18901,18901'), [1, 'ERROR: REDIS_CLUSTER_PORTS: port 18901 is given twice\n']);
});
