// Kind: the write ahead fails for a reason of the log's (a full disk: /dev/full answers every
// write ENOSPC; a path that cannot be written: a directory where the probe's file goes, EISDIR;
// a DATA_DIR lock taken over). The log remembers it (`writeAheadProblem`) until a probe write of
// the same directory succeeds, so a gateway refuses before forwarding meanwhile; an event the
// log refuses for its own fault (a reserved header) does not count. Real files, no Kafka needed.
import { test, type TestContext } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { existsSync, statfsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { DiskExhaustedError, DiskReserveLowError, InvalidEventError, Journal, KafkaLog, MemoryLog, NotPublishedError, PROBE_INTERVAL_MS, PROBE_NAME } from '@tollgate/events';
import { sampleEvents } from './event-log.contract.ts';
import { deadClient, quiet, spoolLines } from './spool-helpers.ts';

/** Waits until `check` holds, polling every 50 ms, at most `ms`. */
async function until(what: string, check: () => boolean, ms = 4 * PROBE_INTERVAL_MS): Promise<void> {
  for (const end = Date.now() + ms; !check();) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('write ahead failing (embedded journal on a full disk): the append is refused at once, the problem stays while probes fail, clears once one succeeds; the refused event is nowhere', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-journal-full-'));
  const samples = sampleEvents(randomUUID().slice(0, 8), 3);
  const log = new MemoryLog({ journal: new Journal(dir) });
  try {
    // The first segment is /dev/full, and the probe's file cannot be written either.
    await symlink('/dev/full', join(dir, '0000000000000001.jsonl'));
    await mkdir(join(dir, PROBE_NAME));
    assert.equal(log.writeAheadProblem(), undefined, 'works before any failure');
    const first = log.append(samples[0]!.topic, [{ event: samples[0]!.event }]);
    assert.ok(first.error instanceof NotPublishedError, String(first.error));
    assert.match(String(first.error?.message), /^journal append failed, nothing written: ENOSPC/);
    assert.match(String(log.writeAheadProblem()?.message), /^journal append failed, nothing written: ENOSPC/);
    await new Promise((r) => setTimeout(r, PROBE_INTERVAL_MS + 300));
    assert.match(String(log.writeAheadProblem()?.message), /EISDIR/, 'a failed probe keeps it failing');
    await rm(join(dir, PROBE_NAME), { recursive: true });
    await until('the probe to succeed', () => log.writeAheadProblem() === undefined);
    const second = log.append(samples[1]!.topic, [{ event: samples[1]!.event }]);
    assert.equal(second.error, undefined);
    await second.durable;
    // The failed segment was given up: the next one is a regular file of its own.
    assert.deepEqual(Journal.read(dir).map((r) => r.event.event_id), [samples[1]!.event.event_id]);
    // An event the log refuses for its own fault is not a failing write ahead.
    const bad = log.append(samples[2]!.topic, [{ event: samples[2]!.event, headers: { event_id: 'x' } }]);
    assert.ok(bad.error instanceof InvalidEventError, String(bad.error));
    assert.equal(log.writeAheadProblem(), undefined);
  } finally {
    await log.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('write ahead failing (spool on a full disk, then its owner refusing): refused at once, failing until a probe succeeds; a refusing owner keeps it failing', async () => {
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-full-'));
  const samples = sampleEvents(randomUUID().slice(0, 8), 4);
  let owner: Error | undefined;
  const log = new KafkaLog({
    kafka: deadClient(), topicPrefix: `t-${randomUUID().slice(0, 8)}.`, spoolDir, sendTimeoutMs: 1000, closeTimeoutMs: 200,
    logger: quiet(), beforeSpool: () => owner,
  });
  try {
    await symlink('/dev/full', join(spoolDir, 'spool-000000000000.jsonl'));
    await mkdir(join(spoolDir, PROBE_NAME));
    const full = log.append(samples[0]!.topic, [{ event: samples[0]!.event }]);
    assert.ok(full.error instanceof NotPublishedError, String(full.error));
    assert.match(String(log.writeAheadProblem()?.message), /ENOSPC/);
    await rm(join(spoolDir, PROBE_NAME), { recursive: true });
    await rm(join(spoolDir, 'spool-000000000000.jsonl'));
    await until('the probe to succeed', () => log.writeAheadProblem() === undefined);
    assert.equal(log.append(samples[1]!.topic, [{ event: samples[1]!.event }]).error, undefined);
    // The owner refuses (a DATA_DIR lock taken over): failing, and probes keep asking the owner.
    owner = new Error('the DATA_DIR lock was taken over');
    const refused = log.append(samples[2]!.topic, [{ event: samples[2]!.event }]);
    assert.match(String(refused.error?.message), /taken over/);
    await new Promise((r) => setTimeout(r, PROBE_INTERVAL_MS + 300));
    assert.match(String(log.writeAheadProblem()?.message), /taken over/);
    owner = undefined;
    await until('the probe to succeed', () => log.writeAheadProblem() === undefined);
    assert.equal(log.append(samples[3]!.topic, [{ event: samples[3]!.event }]).error, undefined);
    assert.deepEqual((await spoolLines(spoolDir)).map((l) => JSON.parse(l).event.event_id), [1, 3].map((i) => samples[i]!.event.event_id));
  } finally {
    await log.close();
    await rm(spoolDir, { recursive: true, force: true });
  }
});

test('write ahead failing (its directory removed from under the process): the next append is refused, not written to a file no start reads; the probe makes the directory again and appends go on in a new segment', async () => {
  // Kind (a breaker's HIGH): `rm -rf DATA_DIR/spool` under a running gateway. Its open segment
  // took every append silently, so a kill -9 then lost the answers since.
  const samples = sampleEvents(randomUUID().slice(0, 8), 6);
  const journalDir = await mkdtemp(join(tmpdir(), 'tollgate-journal-gone-'));
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-gone-'));
  const memory = new MemoryLog({ journal: new Journal(journalDir) });
  const kafka = new KafkaLog({ kafka: deadClient(), topicPrefix: `t-${randomUUID().slice(0, 8)}.`, spoolDir, sendTimeoutMs: 1000, closeTimeoutMs: 200, logger: quiet() });
  try {
    for (const [log, dir, read] of [
      [memory, journalDir, async () => Journal.read(journalDir).map((r) => r.event.event_id)],
      [kafka, spoolDir, async () => (await spoolLines(spoolDir)).map((l) => JSON.parse(l).event.event_id as string)],
    ] as const) {
      const [a, b, c] = log === memory ? samples.slice(0, 3) : samples.slice(3, 6);
      assert.equal(log.append(a!.topic, [{ event: a!.event }]).error, undefined);
      await rm(dir, { recursive: true, force: true });
      const refused = log.append(b!.topic, [{ event: b!.event }]);
      assert.match(String(refused.error?.message), /removed from under this process/);
      assert.ok(log.writeAheadProblem());
      await until('the probe to make the directory again', () => log.writeAheadProblem() === undefined);
      assert.equal(log.append(c!.topic, [{ event: c!.event }]).error, undefined);
      // What a start would read: the event after the heal; the one before the removal went with the directory.
      assert.deepEqual(await read(), [c!.event.event_id]);
    }
  } finally {
    await memory.close();
    await kafka.close();
    await rm(journalDir, { recursive: true, force: true });
    await rm(spoolDir, { recursive: true, force: true });
  }
});

/** A directory on a quiet file system (tmpfs /dev/shm when there is one), its bytes free now. */
async function quietDir(prefix: string): Promise<{ dir: string; free: () => number }> {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = await mkdtemp(join(base, prefix));
  return { dir, free: () => { const s = statfsSync(dir); return s.bavail * s.bsize; } };
}

test('write ahead below its reserve (kind: too little room left to record what is answered): both logs report a DiskReserveLowError naming the free space and the reserve, appends still work, and it clears once there is room again', async () => {
  const MiB = 1_048_576;
  for (const kind of ['journal', 'spool'] as const) {
    const { dir, free } = await quietDir(`tollgate-reserve-${kind}-`);
    // The reserve: 32 MiB under what is free now, so 64 MiB written there takes the disk below it.
    const reserveBytes = free() - 32 * MiB;
    const changes: string[] = [];
    // (the spool's sender also warns that Kafka is away: only the reserve's lines are kept)
    const logger = { warn: (_: object, msg?: string) => { if (/reserve/.test(String(msg))) changes.push(String(msg)); }, error: () => {} };
    const log = kind === 'journal'
      ? new MemoryLog({ journal: new Journal(join(dir, 'journal')), reserveBytes, logger })
      : new KafkaLog({ kafka: deadClient(), spoolDir: join(dir, 'spool'), reserveBytes, logger });
    const samples = sampleEvents(randomUUID().slice(0, 8), 2);
    try {
      assert.equal(log.writeAheadProblem(), undefined, `${kind}: room above the reserve`);
      await writeFile(join(dir, 'ballast'), Buffer.alloc(64 * MiB));
      await until(`${kind}: the reserve to be seen crossed`, () => log.writeAheadProblem() !== undefined);
      const low = log.writeAheadProblem();
      assert.ok(low instanceof DiskReserveLowError, `${kind}: ${String(low)}`);
      assert.equal(low.reserveBytes, reserveBytes);
      assert.ok(low.freeBytes < reserveBytes && low.freeBytes > reserveBytes - 64 * MiB, `${kind}: free ${low.freeBytes}`);
      assert.match(low.message, new RegExp(`^only \\d+(\\.\\d)? MiB free on the disk of ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/${kind}, below the write-ahead reserve of ${(reserveBytes / MiB).toFixed(1).replace(/\.0$/, '').replace('.', '\\.')} MiB \\(WRITE_AHEAD_RESERVE_MB\\)$`));
      // Appends still work: requests in flight record their usage in the reserve.
      const appended = log.append(samples[0]!.topic, [{ event: samples[0]!.event }]);
      assert.equal(appended.error, undefined, `${kind}: ${String(appended.error)}`);
      assert.ok(log.writeAheadProblem() instanceof DiskReserveLowError, `${kind}: a successful append does not clear the reserve verdict`);
      await rm(join(dir, 'ballast'));
      await until(`${kind}: room again`, () => log.writeAheadProblem() === undefined);
      assert.equal(changes.length, 2, changes.join(' | '));
      assert.match(changes[0]!, /below the write-ahead reserve .*: paid requests are refused until there is room again \(operator writes and the requests in flight still record\)$/);
      assert.equal(changes[1], 'free space on the disk written ahead to is above the reserve again: serving');
      if (kind === 'spool') assert.equal((await spoolLines(join(dir, 'spool'))).length, 1, 'the event is in the spool');
    } finally {
      await log.close();
      await rm(dir, { recursive: true, force: true });
    }
  }
});

test('write ahead reserve 0 (WRITE_AHEAD_RESERVE_MB=0): nothing is watched, so even a reserve the disk could never hold is no problem', async () => {
  const { dir } = await quietDir('tollgate-reserve-off-');
  const log = new MemoryLog({ journal: new Journal(dir), reserveBytes: 0 });
  const over = new MemoryLog({ journal: new Journal(join(dir, 'over')), reserveBytes: Number.MAX_SAFE_INTEGER });
  try {
    assert.equal(log.writeAheadProblem(), undefined);
    assert.ok(over.writeAheadProblem() instanceof DiskReserveLowError, 'checked at once, before the first interval');
  } finally {
    await log.close();
    await over.close();
    await rm(dir, { recursive: true, force: true });
  }
});

/**
 * A small tmpfs of `size` bytes and `inodes` inodes mounted on a new directory (root only: the
 * test is skipped, and counted, elsewhere); unmounted and removed by `t.after`.
 */
async function smallDisk(t: TestContext, size: number, inodes = 10_000): Promise<string | undefined> {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to mount a small tmpfs');
    return undefined;
  }
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-small-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},nr_inodes=${inodes}`, 'tmpfs', dir]);
  t.after(async () => {
    execFileSync('umount', [dir]);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

test('write ahead on an exhausted disk (kind: the last MiB, or the last inodes, going while streams relay text that could not be recorded): failing before any append fails, so streams are cut; below the reserve on inodes alone; cleared with a margin, not flapping', async (t) => {
  const MiB = 1_048_576;
  const disk = await smallDisk(t, 32 * MiB, 400);
  if (!disk) return;
  const changes: string[] = [];
  const logger = { warn: (_: object, msg?: string) => { changes.push(String(msg)); }, error: () => {} };
  const log = new MemoryLog({ journal: new Journal(join(disk, 'journal')), reserveBytes: 8 * MiB, logger });
  try {
    assert.equal(log.writeAheadProblem(), undefined);
    // 31.5 MiB of 32 taken: less than EXHAUSTED_BYTES (1 MiB) left.
    await writeFile(join(disk, 'ballast'), Buffer.alloc(31 * MiB + MiB / 2));
    await until('the disk seen full', () => log.writeAheadProblem() instanceof DiskExhaustedError);
    assert.match(String(log.writeAheadProblem()?.message), new RegExp(`^the disk of ${disk}/journal is full: 0\\.\\d MiB and \\d+ inodes free, less than the write ahead needs to go on \\(1 MiB, 8 inodes\\)$`));
    assert.ok(!(log.writeAheadProblem() instanceof DiskReserveLowError), 'not only low: streams are cut');
    // Freed to 2.5 MiB: past the full mark and its 1 MiB margin, still below the 8 MiB reserve.
    await rm(join(disk, 'ballast'));
    await writeFile(join(disk, 'ballast'), Buffer.alloc(32 * MiB - 5 * MiB / 2));
    await until('full no more, still below the reserve', () => log.writeAheadProblem() instanceof DiskReserveLowError);
    // Room again, but within the reserve's margin (8 MiB + 1 MiB): still low.
    await rm(join(disk, 'ballast'));
    await writeFile(join(disk, 'ballast'), Buffer.alloc(32 * MiB - 17 * MiB / 2));
    await new Promise((r) => setTimeout(r, PROBE_INTERVAL_MS + 300));
    assert.ok(log.writeAheadProblem() instanceof DiskReserveLowError, '8.5 MiB free: inside the margin');
    await rm(join(disk, 'ballast'));
    await until('room again', () => log.writeAheadProblem() === undefined);
    // Inodes: 400 in all; below RESERVE_INODES (256) free with plenty of bytes: low; below 8: full.
    const files = join(disk, 'files');
    await mkdir(files);
    let made = 0;
    const free = () => statfsSync(disk).ffree;
    while (free() >= 200) await writeFile(join(files, String(made++)), '');
    await until('low on inodes', () => log.writeAheadProblem() instanceof DiskReserveLowError);
    assert.match(String(log.writeAheadProblem()?.message), new RegExp(`^only \\d+ inodes free on the disk of ${disk}/journal, below the write-ahead reserve of 256 inodes$`));
    while (free() > 4) await writeFile(join(files, String(made++)), '');
    await until('out of inodes', () => log.writeAheadProblem() instanceof DiskExhaustedError);
    await rm(files, { recursive: true });
    await until('inodes again', () => log.writeAheadProblem() === undefined);
    // (the inode count the watch saw depends on when its check fell during the loop)
    const shape = (c: string) => c.replace(/: .*/, '').replace(/only \d+ inodes/, 'only N inodes');
    assert.deepEqual(changes.map(shape), [
      `the disk of ${disk}/journal is full`, `only 2.5 MiB free on the disk of ${disk}/journal, below the write-ahead reserve of 8 MiB (WRITE_AHEAD_RESERVE_MB)`,
      'free space on the disk written ahead to is above the reserve again', `only 199 inodes free on the disk of ${disk}/journal, below the write-ahead reserve of 256 inodes`,
      `the disk of ${disk}/journal is full`, 'free space on the disk written ahead to is above the reserve again',
    ].map(shape));
  } finally {
    await log.close();
  }
});

test('write ahead reserve with its directory removed while below it (kind: a refusal that nothing would ever clear): the watch makes the directory again and the refusal clears once there is room', async (t) => {
  const MiB = 1_048_576;
  const disk = await smallDisk(t, 32 * MiB);
  if (!disk) return;
  const spool = join(disk, 'spool');
  const log = new KafkaLog({ kafka: deadClient(), spoolDir: spool, reserveBytes: 8 * MiB, logger: quiet() });
  try {
    await writeFile(join(disk, 'ballast'), Buffer.alloc(28 * MiB));
    await until('below the reserve', () => log.writeAheadProblem() instanceof DiskReserveLowError);
    await rm(spool, { recursive: true });
    await rm(join(disk, 'ballast'));
    await until('room again', () => log.writeAheadProblem() === undefined);
    assert.ok(existsSync(spool), 'made again');
    const samples = sampleEvents(randomUUID().slice(0, 8), 1);
    assert.equal(log.append(samples[0]!.topic, [{ event: samples[0]!.event }]).error, undefined);
  } finally {
    await log.close();
  }
});
