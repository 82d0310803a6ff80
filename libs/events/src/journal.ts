import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { AnyEvent, Topic } from './types.ts';
import type { EventHeaders } from './event-log.ts';

export interface JournalRecord {
  topic: Topic;
  event: AnyEvent;
  headers: EventHeaders;
}

interface Segment {
  path: string;
  /** sequence number of the last record written to it */
  lastSeq: number;
}

/**
 * The write-ahead journal of the in-process log: every published event is appended (one
 * `write` per publish, synchronous, before `publish` returns), so a process that is killed
 * loses nothing: the next start puts the journal into the warehouse before anything else.
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

  constructor(dir: string, options: { segmentEvents?: number; fsync?: boolean } = {}) {
    this.#dir = dir;
    this.#segmentEvents = options.segmentEvents ?? 10_000;
    this.#fsync = options.fsync ?? false;
    mkdirSync(dir, { recursive: true });
  }

  /** Every record a previous process left, oldest first; a torn last line is skipped. */
  static read(dir: string): JournalRecord[] {
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.jsonl')).sort();
    } catch {
      return [];
    }
    const out: JournalRecord[] = [];
    for (const name of names) {
      for (const line of readFileSync(join(dir, name), 'utf8').split('\n')) {
        if (line === '') continue;
        try {
          out.push(JSON.parse(line) as JournalRecord);
        } catch {
          // only the last line of the last segment can be torn (a write the crash cut short)
        }
      }
    }
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
    writeSync(this.#fd!, text);
    if (this.#fsync) fsyncSync(this.#fd!);
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

  #rotate(firstSeq: number): void {
    if (this.#fd !== null && this.#current) {
      closeSync(this.#fd);
      this.#closed.push(this.#current);
    }
    const path = join(this.#dir, `${String(firstSeq).padStart(16, '0')}.jsonl`);
    this.#fd = openSync(path, 'a');
    this.#current = { path, lastSeq: firstSeq - 1 };
    this.#count = 0;
  }
}
