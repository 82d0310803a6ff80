// The offsets a subscription has handled, committed to Kafka in the background (KafkaLog's
// subscriptions; its own module so its failure handling is tested without a broker fault).
import type { Consumer, EachBatchPayload } from 'kafkajs';
import type { KafkaLogLogger } from './kafka-log.ts';

/** kafkajs' commit of a batch (`commitOffsetsIfNecessary` with offsets), the shape every commit here takes */
export type CommitOffsets = EachBatchPayload['commitOffsetsIfNecessary'];

/** `CommitOffsets` outside a batch: through the running consumer's own commit (the same group generation). */
export function commitVia(consumer: Consumer): CommitOffsets {
  return async (offsets) => {
    if (!offsets) return;
    await consumer.commitOffsets(offsets.topics.flatMap((t) => t.partitions.map((p) => ({ topic: t.topic, partition: p.partition, offset: p.offset }))));
  };
}

/**
 * The offsets a subscription's handler has finished, committed to Kafka in the background: at
 * most one OffsetCommit in flight, carrying every partition's latest handled offset, at most
 * every `intervalMs`. A partition's next batch therefore never waits for a commit round trip
 * (before issue 11 each handler call awaited its own commit, and with
 * `partitionsConsumedConcurrently` kafkajs' next fetch waits for every partition of the last
 * one, so one slow commit held them all up). Only handled offsets are ever recorded, so a
 * commit never runs ahead of the effects; one that fails (a rebalance, the coordinator moving)
 * is sent again at the next turn unless the partition was handled further or rewound
 * meanwhile, or the member joined its group again (`joined`) (an idle partition would otherwise keep its old commit, and a lag > 0, for
 * good); meanwhile a restart or a new owner redelivers a little more, which positions stored
 * with the effects turn into duplicates.
 * `intervalMs` 0 commits each handled offset at once, awaited by the caller.
 */
export class OffsetCommitter {
  readonly #intervalMs: number;
  readonly #log: KafkaLogLogger;
  readonly #group: string;
  /** `topic|partition` → the next offset to read there (Kafka's commit convention), and the membership it was handled in */
  #pending = new Map<string, { topic: string; partition: number; offset: string; joins: number }>();
  #commit: CommitOffsets | null = null;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #failing = false;
  /** partitions dropped while a commit was in flight: what it carried for them is not sent again */
  #withdrawn = new Set<string>();
  #joins = 0;

  constructor(intervalMs: number, log: KafkaLogLogger, group: string) {
    this.#intervalMs = intervalMs;
    this.#log = log;
    this.#group = group;
  }

  /**
   * How many times this member has joined its group (`joined` calls): read when a batch (or a
   * position check) begins and given back to `handled`, which ignores what was handled under an
   * earlier membership.
   */
  get joins(): number {
    return this.#joins;
  }

  /**
   * The handler finished everything before `next` in this partition (a Kafka topic name), in the
   * membership `joins` (default: the current one). Ignored when the member has joined again
   * since (see `joined`).
   */
  async handled(topic: string, partition: number, next: string, commit: CommitOffsets, joins = this.#joins): Promise<void> {
    if (joins !== this.#joins) return;
    if (this.#intervalMs === 0) {
      await commit({ topics: [{ topic, partitions: [{ partition, offset: next }] }] });
      return;
    }
    this.#commit = commit;
    this.#pending.set(`${topic}|${partition}`, { topic, partition, offset: next, joins });
    if (!this.#running) this.#schedule();
  }

  /** The next commit in `intervalMs`, unless one is already due. */
  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#run();
    }, this.#intervalMs);
  }

  /** A rewind: what was recorded for the partition is past the position it goes back to. */
  drop(topic: string, partition: number): void {
    this.#pending.delete(`${topic}|${partition}`);
    if (this.#running) this.#withdrawn.add(`${topic}|${partition}`);
  }

  /**
   * The member (re)joined its group (kafkajs' GROUP_JOIN): everything recorded under the earlier membership is forgotten and never sent, also for a
   * partition it keeps, and so is a commit of then that failed. Meanwhile another member may
   * have owned the partition and committed further (this one stalled past its session timeout,
   * say); committing ours after the join would move the group's position back, and an idle
   * partition would keep it there. Nothing is lost by it: after a join kafkajs reads every
   * assigned partition from the group's last commit, so what was handled and not committed comes
   * again, as duplicates (positions stored with the effects), and is committed then; a partition
   * the stored-position check moves is committed there.
   */
  joined(): void {
    this.#joins++;
    this.#pending.clear();
  }

  /**
   * Commits everything recorded so far and waits for it (stop); never throws. A commit that
   * fails here is not tried again (the broker is away while the member leaves): the next owner
   * redelivers from the last commit, and positions stored with the effects make that exact.
   */
  async flush(): Promise<void> {
    for (;;) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = null;
      if (this.#running) await this.#running;
      else if (this.#pending.size > 0 && !this.#failing) await this.#run();
      else if (this.#pending.size > 0) {
        // one last try of what failed before, then give up
        this.#failing = false;
        await this.#run();
        if (this.#failing) this.#pending.clear();
      } else return;
    }
  }

  #run(): Promise<void> {
    const commit = this.#commit;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    if (!commit || pending.length === 0) return Promise.resolve();
    const byTopic = new Map<string, Array<{ partition: number; offset: string }>>();
    for (const p of pending) {
      let list = byTopic.get(p.topic);
      if (!list) byTopic.set(p.topic, (list = []));
      list.push({ partition: p.partition, offset: p.offset });
    }
    this.#running = (async () => {
      try {
        await commit({ topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) });
        this.#failing = false;
      } catch (err) {
        if (!this.#failing) this.#log.warn({ err, group: this.#group }, 'offset commit failed; retrying (a restart meanwhile redelivers a little more)');
        this.#failing = true;
        // Sent again at the next turn, unless handled further meanwhile, rewound, or the member
        // joined its group again since (`joined`): an idle partition has no next batch to commit
        // for it, and its lag would read > 0 for good.
        for (const p of pending) {
          const id = `${p.topic}|${p.partition}`;
          if (this.#pending.has(id) || this.#withdrawn.has(id) || p.joins !== this.#joins) continue;
          this.#pending.set(id, p);
        }
      }
    })().finally(() => {
      this.#running = null;
      this.#withdrawn.clear();
      // what was handled meanwhile goes out in the next commit
      if (this.#pending.size > 0) this.#schedule();
    });
    return this.#running;
  }
}
