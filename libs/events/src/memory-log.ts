import type { AnyEvent, Topic } from './types.ts';
import type {
  Appended, ConsumedEvent, DeadLetter, EventLog, PublishedEvent, SubscribeOptions, Subscription,
} from './event-log.ts';
import type { Journal } from './journal.ts';
import { headersProblem, InvalidEventError, NotPublishedError } from './event-log.ts';
import { reserveChanged, WriteAheadHealth } from './write-ahead-health.ts';

/** An event as held: with its place in the journal. */
type Held = ConsumedEvent & { seq: number };

interface Group {
  topics: Topic[];
  handler: SubscribeOptions['handler'];
  onDeadLetters: SubscribeOptions['onDeadLetters'];
  /** next offset to deliver, per topic */
  cursor: Map<Topic, bigint>;
  running: Promise<void> | null;
  again: boolean;
  stopped: boolean;
}

/**
 * The in-process event log of the single-machine mode: one partition per topic, delivered to
 * each group in order, one batch at a time. It holds events only until every group has
 * consumed them. With a journal, every event is written ahead before `publish` returns and
 * forgotten there once every group has it, so a killed process loses nothing (the embedded
 * mode rebuilds hot state from the warehouse at start, then publishes a leftover journal's
 * records again, once its groups have subscribed, so the live consumers apply them).
 */
export class MemoryLog implements EventLog {
  readonly durablePositions = false;
  #entries = new Map<Topic, Held[]>();
  /** offset of the first entry still held, per topic */
  #base = new Map<Topic, bigint>();
  #next = new Map<Topic, bigint>();
  #groups = new Map<string, Group>();
  #maxBatch: number;
  #closed = false;
  #journal: Journal | undefined;
  /** whether the journal can be written now (EventLog.writeAheadProblem); a probe of its directory */
  #health: WriteAheadHealth | undefined;
  #seq = 0;
  #deadLetterOffset = 0n;
  /** groups with new events whose delivery waits for the next `setImmediate` (see `publish`) */
  #due = new Set<Group>();
  #dueTimer: ReturnType<typeof setImmediate> | undefined;
  /** woken whenever a group's cursor moves or a group stops (`drain` waits on them) */
  #progress: Array<() => void> = [];
  /** while `quiesce` runs: deliver nothing at or past these offsets, per topic */
  #limit: Map<Topic, bigint> | undefined;
  /** the `quiesce` running, so a second one waits for it */
  #quiescing: Promise<unknown> = Promise.resolve();

  /**
   * `journal`: the write ahead (none: nothing survives the process); `reserve`: bytes that must
   * stay free on the journal's disk (default 0: not watched), below which `writeAheadProblem()`
   * is a DiskReserveLowError, with `logger` told when that starts and ends.
   */
  constructor(options: { maxBatch?: number; journal?: Journal; reserveBytes?: number; logger?: { warn(obj: object, msg?: string): void } } = {}) {
    this.#maxBatch = options.maxBatch ?? 1000;
    this.#journal = options.journal;
    const journal = options.journal;
    if (journal) {
      const logger = options.logger;
      this.#health = new WriteAheadHealth(() => journal.probe(), {
        dir: journal.dir, reserveBytes: options.reserveBytes ?? 0, onChange: (low) => { if (logger) reserveChanged(logger, low, journal.dir); },
      });
    }
  }

  publish(topic: Topic, events: PublishedEvent[]): Promise<void> {
    const appended = this.append(topic, events);
    return appended.error ? Promise.reject(appended.error) : appended.durable;
  }

  /** `publish`, its outcome told at once (EventLog.append): the journal and the list are written inside the call. */
  append(topic: Topic, events: PublishedEvent[]): Appended {
    if (this.#closed) return { error: new NotPublishedError('event log is closed') };
    // What Kafka could not carry is refused here too: one rule in every deployment.
    for (const { event, headers } of events) {
      const problem = headersProblem(event.event_id, headers);
      if (problem !== undefined) return { error: new InvalidEventError(problem) };
    }
    // Written ahead, synchronously: once publish is called the events survive a crash.
    if (this.#journal) {
      try {
        this.#journal.append(events.map(({ event, headers }) => ({ topic, event, headers: headers ?? {} })), this.#seq + events.length);
      } catch (err) {
        this.#health!.failed(err as Error);
        return { error: err as Error };
      }
      this.#health!.succeeded();
    }
    const list = this.#list(topic);
    for (const { event, headers } of events) {
      const offset = this.#next.get(topic) ?? 0n;
      this.#next.set(topic, offset + 1n);
      list.push({ topic, partition: 0, offset, event, headers: headers ?? {}, seq: ++this.#seq });
    }
    // Delivery starts on the next turn of the event loop, not inside `publish`: the consumers'
    // synchronous work (decoding, applying, building warehouse rows) then runs after the
    // publishing request has written its response instead of in front of it, and every event
    // published in the same turn reaches a group as one batch (issue 11: the latency tail).
    for (const group of this.#groups.values()) {
      if (group.topics.includes(topic)) this.#due.add(group);
    }
    if (this.#due.size > 0) this.#dueTimer ??= setImmediate(() => this.#deliverDue());
    return { durable: Promise.resolve() };
  }

  /**
   * EventLog.writeAheadProblem: the journal's last append failed and no probe has succeeded
   * since, or (DiskReserveLowError) its disk is below the reserve.
   */
  writeAheadProblem(): Error | undefined {
    return this.#health?.problem();
  }

  #deliverDue(): void {
    if (this.#dueTimer !== undefined) clearImmediate(this.#dueTimer);
    this.#dueTimer = undefined;
    const due = [...this.#due];
    this.#due.clear();
    for (const group of due) if (!group.stopped) this.#pump(group);
  }

  /**
   * Hands dead-letter records straight to the groups subscribed for them (the warehouse sink)
   * and resolves once they have them; rejects if one fails, so the caller retries. Not
   * journaled: in this process the records describe state that is itself rebuilt at start.
   */
  async deadLetter(records: DeadLetter[]): Promise<void> {
    if (this.#closed) throw new Error('event log is closed');
    const delivered = records.map((value) => ({ partition: 0, offset: this.#deadLetterOffset++, value }));
    for (const group of this.#groups.values()) {
      if (group.onDeadLetters && !group.stopped) await group.onDeadLetters(delivered);
    }
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    if (this.#groups.has(options.group)) throw new Error(`group ${options.group} already subscribed`);
    const group: Group = {
      topics: options.topics,
      handler: options.handler,
      onDeadLetters: options.onDeadLetters,
      cursor: new Map(options.topics.map((t) => [t, options.fromBeginning === false ? this.#next.get(t) ?? 0n : this.#base.get(t) ?? 0n])),
      running: null,
      again: false,
      stopped: false,
    };
    this.#groups.set(options.group, group);
    this.#pump(group);
    return {
      stop: async () => {
        group.stopped = true;
        await group.running;
        this.#groups.delete(options.group);
        this.#wake();
      },
    };
  }

  /**
   * Resolves when every group has consumed everything published before the call (what is
   * published meanwhile is not waited for: under steady traffic the groups are never idle, and a
   * report or `reconcile` waiting for idle waited minutes; a tester's finding). A group whose
   * handler keeps failing is waited for, as it retries.
   */
  async drain(): Promise<void> {
    const target = new Map(this.#next);
    for (;;) {
      this.#deliverDue();
      const behind = this.#behind(target);
      if (behind.length === 0) return;
      for (const g of behind) this.#pump(g);
      await new Promise<void>((resolve) => this.#progress.push(resolve));
    }
  }

  /**
   * Runs `fn` with every group stopped at the same point: delivery is held at what was published
   * before the call, every group is let consume up to there, `fn` runs, and delivery resumes.
   * Publishing goes on meanwhile (journaled, delivered after). So a reader comparing what two
   * groups made of the log (hot state against the warehouse: `reconcile`) sees both at one
   * position under live traffic, as the distributed mode's log positions give it. One at a time;
   * resolves or rejects with `fn`.
   */
  async quiesce<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#quiescing.catch(() => {}).then(async () => {
      this.#limit = new Map(this.#next);
      try {
        await this.drain();
        return await fn();
      } finally {
        this.#limit = undefined;
        for (const g of this.#groups.values()) if (!g.stopped) this.#pump(g);
      }
    });
    this.#quiescing = run;
    return run;
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    // Everything, also what is published while the groups catch up.
    do await this.drain(); while (this.#behind(this.#next).length > 0);
    this.#closed = true;
    this.#health?.stop();
    this.#journal?.close();
    for (const g of this.#groups.values()) g.stopped = true;
  }

  #list(topic: Topic): Held[] {
    let list = this.#entries.get(topic);
    if (!list) {
      list = [];
      this.#entries.set(topic, list);
      this.#base.set(topic, 0n);
    }
    return list;
  }

  #pump(group: Group): void {
    if (group.running) {
      group.again = true;
      return;
    }
    group.running = this.#run(group).finally(() => {
      group.running = null;
      if (group.again && !group.stopped) {
        group.again = false;
        this.#pump(group);
      }
    });
  }

  async #run(group: Group): Promise<void> {
    let failures = 0;
    while (!group.stopped) {
      const batch = this.#pending(group);
      if (batch.length === 0) return;
      try {
        await group.handler(batch);
        failures = 0;
      } catch {
        // Redelivered after a pause, like a consumer that did not commit; the handler decides
        // what is retriable. Backoff caps at 2 s so a broken sink does not spin the CPU.
        failures++;
        await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** failures)));
        continue;
      }
      for (const e of batch) group.cursor.set(e.topic, e.offset + 1n);
      this.#trim();
      this.#wake();
    }
  }

  /** The groups still running that have not consumed up to `target` (offsets per topic). */
  #behind(target: Map<Topic, bigint>): Group[] {
    return [...this.#groups.values()].filter((g) => !g.stopped
      && g.topics.some((t) => (g.cursor.get(t) ?? 0n) < (target.get(t) ?? 0n)));
  }

  #wake(): void {
    if (this.#progress.length === 0) return;
    const waiting = this.#progress;
    this.#progress = [];
    for (const resolve of waiting) resolve();
  }

  #pending(group: Group): ConsumedEvent[] {
    const out: ConsumedEvent[] = [];
    for (const topic of group.topics) {
      const list = this.#entries.get(topic) ?? [];
      const base = this.#base.get(topic) ?? 0n;
      const from = Number((group.cursor.get(topic) ?? 0n) - base);
      const limit = this.#limit ? this.#limit.get(topic) ?? 0n : undefined;
      const end = limit === undefined ? list.length : Math.min(list.length, Number(limit - base));
      for (let i = Math.max(0, from); i < end && out.length < this.#maxBatch; i++) out.push(list[i]!);
    }
    return out;
  }

  /** Drops entries every group has consumed, so a long-running process does not grow. */
  #trim(): void {
    for (const [topic, list] of this.#entries) {
      let min = this.#next.get(topic) ?? 0n;
      for (const g of this.#groups.values()) {
        const c = g.cursor.get(topic);
        if (c !== undefined && c < min) min = c;
      }
      const base = this.#base.get(topic) ?? 0n;
      const drop = Number(min - base);
      if (drop > 0) {
        list.splice(0, drop);
        this.#base.set(topic, min);
      }
    }
    if (this.#journal) {
      // The lowest sequence number some group still needs; everything below is consumed.
      let held = this.#seq + 1;
      for (const list of this.#entries.values()) if (list.length > 0 && list[0]!.seq < held) held = list[0]!.seq;
      this.#journal.release(held);
    }
  }
}

export type { AnyEvent };
