// Background threads below the request thread's CPU priority (BACKGROUND_THREAD_NICE): where the
// warehouse engine runs in this process (chDB), its threads and every other non-V8 background
// thread get the nice value; the main thread (requests) and V8's workers (the GC it waits on)
// keep the process's own. Linux only (per-thread nice values are read from /proc).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { loadConfig } from '@tollgate/config';
import { lowerBackgroundThreads } from '../src/background-priority.ts';
import { customer, startStack } from '../../../test/support/tollgate.ts';

const linux = existsSync('/proc/self/task');

/** This process's threads: tid → name (comm) and nice value (/proc/self/task/<tid>/stat, field 19). */
function threads(): Map<number, { name: string; nice: number }> {
  const out = new Map<number, { name: string; nice: number }>();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
      out.set(Number(t), { name: readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim(), nice: Number(fields[16]) });
    } catch { /* exited meanwhile */ }
  }
  return out;
}

const isV8 = (name: string) => /^V8 ?Worker|^V8 DefaultWorke|^v8:/.test(name);

function idleWorker(): Promise<Worker> {
  const w = new Worker('setInterval(() => {}, 1000)', { eval: true });
  return new Promise((resolve, reject) => { w.once('online', () => resolve(w)); w.once('error', reject); });
}

test('background threads get the nice value, the main thread and V8 workers keep the process\'s; threads started later are lowered at the next scan; stop() ends the scans', { skip: !linux && 'needs /proc (Linux)' }, async () => {
  const base = threads().get(process.pid)!.nice;
  const nice = Math.min(19, base + 7);
  const first = await idleWorker();
  const before = new Set(threads().keys());
  const priority = lowerBackgroundThreads(nice, 100);
  const second = await idleWorker();
  try {
    await sleep(400); // several scans
    const now = threads();
    assert.equal(now.get(process.pid)!.nice, base, 'main thread');
    const v8 = [...now.values()].filter((t) => isV8(t.name));
    assert.ok(v8.length > 0, 'V8 has worker threads');
    for (const t of v8) assert.equal(t.nice, base, `V8 thread ${t.name}`);
    const lowered = [...now].filter(([tid, t]) => tid !== process.pid && !isV8(t.name));
    assert.ok(lowered.some(([tid]) => !before.has(tid)), 'a thread started after the call (the second worker\'s)');
    for (const [tid, t] of lowered) assert.equal(t.nice, nice, `thread ${tid} ${t.name}`);
    assert.ok(Object.values(priority.lowered).reduce((a, b) => a + b, 0) >= lowered.length);
  } finally {
    priority.stop();
  }
  // After stop(): a new thread keeps the process's priority.
  const known = new Set(threads().keys());
  const third = await idleWorker();
  await sleep(400);
  const fresh = [...threads()].filter(([tid, t]) => !known.has(tid) && !isV8(t.name));
  assert.ok(fresh.length > 0, 'the third worker started threads');
  for (const [tid, t] of fresh) assert.equal(t.nice, base, `thread ${tid} ${t.name} started after stop()`);
  await Promise.all([first.terminate(), second.terminate(), third.terminate()]);
});

test('a nice value out of 0–19 or a scan interval under 100 ms is refused', () => {
  assert.throws(() => lowerBackgroundThreads(20), /nice must be an integer from 0 to 19, got 20/);
  assert.throws(() => lowerBackgroundThreads(-1), /nice must be an integer from 0 to 19, got -1/);
  assert.throws(() => lowerBackgroundThreads(5, 10), /intervalMs must be >= 100, got 10/);
  assert.equal(loadConfig({}).warehouse.backgroundNice, 10);
  assert.equal(loadConfig({ BACKGROUND_THREAD_NICE: '0' }).warehouse.backgroundNice, 0);
  assert.throws(() => loadConfig({ BACKGROUND_THREAD_NICE: '20' }), /BACKGROUND_THREAD_NICE: expected a whole number from 0 to 19, got "20"/);
});

test('embedded with chDB: after a request, chDB\'s threads run at BACKGROUND_THREAD_NICE (default 10) and the request thread at the process\'s priority', { skip: !linux && 'needs /proc (Linux)' }, async () => {
  const base = threads().get(process.pid)!.nice;
  const stack = await startStack();
  try {
    const c = await customer(stack.url, 1);
    await c.client.messages.create({ model: 'claude-sonnet-4-5-20250929', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
    // The scan runs every 2 s; chDB starts its pools on demand.
    let engine: Array<[number, { name: string; nice: number }]> = [];
    for (let i = 0; i < 50; i++) {
      engine = [...threads()].filter(([, t]) => /^(ThreadPool|MergeMutate|BgSchPool|libuv-worker)/.test(t.name));
      if (engine.length > 0 && engine.every(([, t]) => t.nice === Math.max(base, 10))) break;
      await sleep(100);
    }
    assert.ok(engine.some(([, t]) => t.name.startsWith('ThreadPool')), `chDB's ThreadPool threads exist: ${engine.map(([, t]) => t.name).join(', ')}`);
    for (const [tid, t] of engine) assert.equal(t.nice, Math.max(base, 10), `thread ${tid} ${t.name}`);
    assert.equal(threads().get(process.pid)!.nice, base, 'main thread');
  } finally {
    await stack.close();
  }
});
