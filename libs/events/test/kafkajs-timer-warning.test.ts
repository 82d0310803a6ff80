// A process on Kafka prints no warning for kafkajs's negative-delay timer (kafkajs issue #1751:
// its request queue arms a timer of `-1 - Date.now()` ms, which Node 24 warns about), and every
// other warning as Node prints it. Each case runs in a child process: warning listeners are
// process-wide.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../..', import.meta.url));

/**
 * stderr of a child that (optionally) opens a KafkaLog, then makes kafkajs's request queue arm
 * its check timer the way a broker connection does, and emits a warning of the same name from
 * its own code (Node's timers warn once per process, so a second negative timer would print
 * nothing anyway) and one other warning; the child's pid in it reads `PID`.
 */
function childStderr(openKafkaLog: boolean): string {
  const script = `
    import { createRequire } from 'node:module';
    import { Kafka, logLevel } from 'kafkajs';
    import { KafkaLog } from '@tollgate/events';
    const require = createRequire(import.meta.url);
    if (${openKafkaLog}) {
      new KafkaLog({ kafka: new Kafka({ brokers: ['127.0.0.1:1'], logLevel: logLevel.NOTHING }), spoolDir: ${JSON.stringify(mkdtempSync(join(tmpdir(), 'tollgate-warn-')))} });
    }
    const RequestQueue = require('kafkajs/src/network/requestQueue/index.js');
    const queue = new RequestQueue({ maxInFlightRequests: 1, requestTimeout: 1000, enforceRequestTimeout: false, clientId: 't', broker: 'b', logger: null });
    queue.scheduleCheckPendingRequests();
    process.emitWarning('-5 is a negative number.', 'TimeoutNegativeWarning');
    process.emitWarning('another');
    setTimeout(() => process.exit(0), 20);
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 30_000 });
  assert.equal(child.status, 0, child.stderr);
  return child.stderr.replaceAll(`(node:${child.pid})`, '(node:PID)');
}

test('kafkajs timer warning: a child without a KafkaLog prints it (the case is real)', () => {
  assert.match(childStderr(false), /^\(node:PID\) TimeoutNegativeWarning: -\d{13} is a negative number\.\nTimeout duration was set to 1\./);
});

test('kafkajs timer warning: a process with a KafkaLog drops it and prints every other warning as Node does', () => {
  assert.equal(childStderr(true), [
    '(node:PID) TimeoutNegativeWarning: -5 is a negative number.',
    '(Use `node --trace-warnings ...` to show where the warning was created)',
    '(node:PID) Warning: another',
    '',
  ].join('\n'));
});

test('kafkajs timer warning: listeners added before the KafkaLog keep their semantics (once fires once, removeListener removes)', () => {
  const script = `
    import { createRequire } from 'node:module';
    import { Kafka, logLevel } from 'kafkajs';
    import { KafkaLog } from '@tollgate/events';
    const require = createRequire(import.meta.url);
    let onceCalls = 0;
    process.once('warning', () => { onceCalls++; });
    const captured = [];
    const capture = (w) => { captured.push(w.message); };
    process.on('warning', capture);
    const [nodePrinter] = process.listeners('warning');
    new KafkaLog({ kafka: new Kafka({ brokers: ['127.0.0.1:1'], logLevel: logLevel.NOTHING }), spoolDir: ${JSON.stringify(mkdtempSync(join(tmpdir(), 'tollgate-warn-')))} });
    const RequestQueue = require('kafkajs/src/network/requestQueue/index.js');
    new RequestQueue({ maxInFlightRequests: 1, requestTimeout: 1000, enforceRequestTimeout: false, clientId: 't', broker: 'b', logger: null }).scheduleCheckPendingRequests();
    process.emitWarning('first');
    setTimeout(() => {
      process.removeListener('warning', capture);
      process.removeListener('warning', nodePrinter);
      process.emitWarning('second');
      setTimeout(() => { process.stdout.write(JSON.stringify({ onceCalls, captured, listeners: process.listenerCount('warning') })); process.exit(0); }, 20);
    }, 20);
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 30_000 });
  assert.equal(child.status, 0, child.stderr);
  assert.deepEqual(JSON.parse(child.stdout), { onceCalls: 1, captured: ['first'], listeners: 0 });
  assert.equal(child.stderr.replaceAll(`(node:${child.pid})`, '(node:PID)'), [
    '(node:PID) Warning: first',
    '(Use `node --trace-warnings ...` to show where the warning was created)',
    '',
  ].join('\n'));
});
