import { closeSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { AnyEvent, Topic } from './types.ts';
import { carriedHeaders, NotPublishedError, type EventHeaders } from './event-log.ts';
import { probeDirectory } from './write-ahead-health.ts';

export interface JournalRecord {
  topic: Topic;
  event: AnyEvent;
  headers: EventHeaders;
}

/** A journal line that is not a record and is not the torn end of the journal. */
export interface UnreadableJournalLine {
  /** segment file name, e.g. `0000000000000001.jsonl` */
  segment: string;
  /** 1-based line number in the segment */
  line: number;
  /** the line's text, at most 4096 characters */
  raw: string;
  /** why it could not be read (the JSON error, or the shape it lacks) */
  error: string;
}

/** What a previous process left in a journal directory (`Journal.scan`). */
export interface JournalScan {
  /** every readable record, oldest first */
  records: JournalRecord[];
  /**
   * lines that could not be read and are not the torn end (bad JSON, not a record, an unknown
   * topic, a known event type on another topic): to be reported, never dropped silently
   */
  unreadable: UnreadableJournalLine[];
  /** the last segment's unterminated last line, dropped: a write the crash cut short */
  torn: string | undefined;
}

/**
 * The event types each topic carries, as the producers publish them. A record whose topic is
 * none of these, or whose known event type belongs to another topic, is not a record this log
 * wrote: it is reported like an unreadable line. Unknown event types are left to the consumers'
 * decoder, which quarantines them as it does live.
 */
const TOPIC_TYPES: Readonly<Record<Topic, readonly string[]>> = {
  usage: ['usage'],
  ledger: ['ledger'],
  control: ['account', 'key', 'price_version'],
};
const KNOWN_TYPES = new Set(Object.values(TOPIC_TYPES).flat());

function asRecord(line: string): JournalRecord | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  const r = value as Partial<JournalRecord> | null;
  if (r === null || typeof r !== 'object' || typeof r.topic !== 'string' || r.event === null || typeof r.event !== 'object') {
    return 'not a journal record (an object with a topic and an event)';
  }
  if (!Object.hasOwn(TOPIC_TYPES, r.topic)) return `unknown topic ${JSON.stringify(r.topic.slice(0, 64))}`;
  const type = (r.event as { type?: unknown }).type;
  if (typeof type === 'string' && KNOWN_TYPES.has(type) && !TOPIC_TYPES[r.topic as Topic].includes(type)) {
    return `a ${type} event on topic ${r.topic}`;
  }
  // headers as every log carries them: replaying the line must not be refused for them
  return { topic: r.topic, event: r.event, headers: carriedHeaders(r.headers) } as JournalRecord;
}

interface Segment {
  path: string;
  /** sequence number of the last record written to it */
  lastSeq: number;
}

/**
 * The write-ahead journal of the in-process log: every published event is appended (one
 * `write` per publish, synchronous, before `publish` returns), so a process that is killed
 * loses nothing: the next start publishes the journal's records into the log again, where the
 * same consumers as for live events apply them (embedded adapters, `recover`).
 * Segments are deleted once every consumer group has consumed all their events. The writes
 * reach the OS page cache, which survives a process crash; with `fsync: true` every write is
 * also flushed to the disk (survives a machine crash, costs a disk flush per publish).
 */
export class Journal {
  #dir: string;
  #segmentEvents: number;
  #fsync: boolean;
  #fd: number | null = null;
  #current: Segment | null = null;
  #count = 0;
  #closed: Segment[] = [];

  /** the directory of the journal's segments */
  get dir(): string {
    return this.#dir;
  }

  constructor(dir: string, options: { segmentEvents?: number; fsync?: boolean } = {}) {
    this.#dir = dir;
    this.#segmentEvents = options.segmentEvents ?? 10_000;
    this.#fsync = options.fsync ?? false;
    mkdirSync(dir, { recursive: true });
  }

  /** Every readable record a previous process left, oldest first (`scan(dir).records`). */
  static read(dir: string): JournalRecord[] {
    return Journal.scan(dir).records;
  }

  /**
   * Everything a previous process left, oldest first. Each record is written with its newline
   * in one `write`, so a crash can cut short only the last write: the last segment's final line
   * when it has no newline is `torn` and dropped. Any other line that is not a record (bad JSON,
   * or JSON without a topic and an event) is `unreadable`: the caller must report it, since it
   * may have been an event that money depends on.
   */
  static scan(dir: string): JournalScan {
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.jsonl')).sort();
    } catch {
      return { records: [], unreadable: [], torn: undefined };
    }
    const out: JournalScan = { records: [], unreadable: [], torn: undefined };
    names.forEach((name, n) => {
      const lines = readFileSync(join(dir, name), 'utf8').split('\n');
      // After the last newline: '' for a well-terminated segment, else an unfinished write.
      const tail = lines.pop()!;
      lines.forEach((line, i) => {
        if (line === '') return;
        const r = asRecord(line);
        if (typeof r === 'string') out.unreadable.push({ segment: name, line: i + 1, raw: line.slice(0, 4096), error: r });
        else out.records.push(r);
      });
      if (tail === '') return;
      const r = asRecord(tail);
      if (typeof r !== 'string') out.records.push(r);
      else if (n === names.length - 1) out.torn = tail.slice(0, 4096);
      else out.unreadable.push({ segment: name, line: lines.length + 1, raw: tail.slice(0, 4096), error: r });
    });
    return out;
  }

  /** Removes every segment (after their records are safely elsewhere). */
  static clear(dir: string): void {
    rmSync(dir, { recursive: true, force: true });
  }

  /** Appends records whose sequence numbers end at `lastSeq`. */
  append(records: readonly JournalRecord[], lastSeq: number): void {
    if (this.#fd === null || this.#count >= this.#segmentEvents) this.#rotate(lastSeq - records.length + 1);
    let text = '';
    for (const r of records) text += `${JSON.stringify(r)}\n`;
    const fd = this.#fd!;
    // A segment whose file was removed from under the process (DATA_DIR/journal deleted) would
    // take writes no recovery reads: given up (the next append makes a new one, once the
    // directory is back), and this append fails.
    if (fstatSync(fd).nlink === 0) {
      try { closeSync(fd); } catch { /* closed either way */ }
      this.#fd = null;
      this.#current = null;
      this.#count = 0;
      throw new NotPublishedError(`journal append refused, nothing written: its segment was removed from under this process`);
    }
    const bytes = Buffer.from(text, 'utf8');
    let off = 0;
    try {
      // A write may take less than asked (a disk filling up): the rest follows in the next.
      while (off < bytes.length) off += writeSync(fd, bytes, off);
      if (this.#fsync) fsyncSync(fd);
    } catch (err) {
      // Nothing of this append may stay: a torn line would get the next append glued onto it
      // (both lost at recovery), and a whole one would be replayed for a request its caller
      // was told failed. Cut back (best effort), and the segment is not written again: the next
      // append starts a new one (as the spool does), on whatever the disk offers by then.
      let cutBack = off === 0;
      try {
        if (off > 0) ftruncateSync(fd, fstatSync(fd).size - off);
        cutBack = true;
      } catch { /* left as it is: a torn line is reported as unreadable when read, never replayed */ }
      try { closeSync(fd); } catch { /* closed either way */ }
      // One with records is released with the others; an empty one goes now (the next segment
      // starts at the same sequence number, so under the same name).
      if (this.#current && this.#count > 0) this.#closed.push(this.#current);
      else if (this.#current) try { rmSync(this.#current.path, { force: true }); } catch { /* an empty file: read as nothing */ }
      this.#fd = null;
      this.#current = null;
      this.#count = 0;
      // Nothing of it stays (as the spool says): certainly not published, so a caller may free
      // what it claimed (a credit grant's reference) and answer "retry" (503), not 500.
      if (cutBack) throw new NotPublishedError(`journal append failed, nothing written: ${(err as Error).message}`, { cause: err });
      throw err;
    }
    this.#count += records.length;
    this.#current!.lastSeq = lastSeq;
  }

  /** Deletes the closed segments whose records all have sequence numbers below `seq`. */
  release(seq: number): void {
    while (this.#closed.length > 0 && this.#closed[0]!.lastSeq < seq) {
      rmSync(this.#closed.shift()!.path, { force: true });
    }
    // The open segment too, once everything in it is consumed: start afresh on the next write.
    if (this.#current && this.#current.lastSeq < seq && this.#fd !== null) {
      closeSync(this.#fd);
      rmSync(this.#current.path, { force: true });
      this.#fd = null;
      this.#current = null;
      this.#count = 0;
    }
  }

  close(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
  }

  /** One write like an append's into this journal's directory (WriteAheadHealth's probe); throws what it throws. */
  probe(): void {
    probeDirectory(this.#dir)();
  }

  #rotate(firstSeq: number): void {
    if (this.#fd !== null && this.#current) {
      closeSync(this.#fd);
      this.#closed.push(this.#current);
    }
    // Closed first: a segment that cannot be made leaves no closed descriptor to write to.
    this.#fd = null;
    this.#current = null;
    const path = join(this.#dir, `${String(firstSeq).padStart(16, '0')}.jsonl`);
    this.#fd = openSync(path, 'a');
    this.#current = { path, lastSeq: firstSeq - 1 };
    this.#count = 0;
  }
}
