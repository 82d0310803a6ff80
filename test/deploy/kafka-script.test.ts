// deploy/kafka.sh's storage format, checked without a broker: the cluster id it draws and how it
// passes it to Kafka's StorageTool.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { read } from './support.ts';

const SCRIPT = read('deploy/kafka.sh');

/** deploy/kafka.sh's own `new_cluster_id` function, run alone in bash with `args`. */
function newClusterId(...args: string[]): string {
  const fn = /^new_cluster_id\(\) \{\n[\s\S]*?\n\}\n/m.exec(SCRIPT);
  assert.ok(fn, 'deploy/kafka.sh defines new_cluster_id');
  const r = spawnSync('bash', ['-c', `${fn[0]}\nnew_cluster_id "$@"`, 'kafka-id', ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test('a storage cluster id that a command line would read as an option (a leading "-", 1 in 64 draws) is drawn again, and the id is passed as one --cluster-id=<id> word', () => {
  // Kind: a fresh CI run failed with "argument --cluster-id/-t: expected one argument" when the
  // random id began with '-'. Random bytes whose first 16 encode to "-AEBAQEBAQEBAQEBAQEBAQ":
  const first = Buffer.from([0xf8, ...new Array<number>(15).fill(1)]);
  const second = Buffer.from([0x10, ...new Array<number>(15).fill(2)]);
  assert.ok(first.toString('base64url').startsWith('-'));
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-kafka-id-'));
  try {
    const source = join(dir, 'random');
    writeFileSync(source, Buffer.concat([first, second]));
    assert.equal(newClusterId(source), second.toString('base64url'), 'the second draw, exactly');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // from /dev/urandom: a Kafka Uuid string (22 base64url characters of 16 bytes), never "-…"
  for (let i = 0; i < 20; i++) assert.match(newClusterId(), /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
  // and whatever the id, StorageTool gets it attached to its option
  assert.match(SCRIPT, /StorageTool format "--cluster-id=\$cid" /);
  assert.doesNotMatch(SCRIPT, /StorageTool format -t /);
});
