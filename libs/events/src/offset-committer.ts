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
 * is sent again at the next turn unless the partition was handled further, rewound or taken
 * away meanwhile (an idle partition would otherwise keep its old commit, and a lag > 0, for
 * good); meanwhile a restart or a new owner redelivers a little more, which positions stored
 * with the effects turn into duplicates.
 * `intervalMs` 0 commits each handled offset at once, awaited by the caller.
 */
export class OffsetCommitter {
  readonly #intervalMs: number;
  readonly #log: KafkaLogLogger;
  readonly #group: string;
  /** `topic|partition` → the next offset to read there (Kafka's commit convention) */
  #pending = new Map<string, { topic: string; partition: number; offset: string }>();
  #commit: CommitOffsets | null = null;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #failing = false;
  /** partitions dropped while a commit was in flight: what it carried for them is not sent again */
  #withdrawn = new Set<string>();
  /** the partitions this member holds (the last `retain`), null before the first */
  #assigned: ReadonlyMap<string, ReadonlySet<number>> | null = null;

  constructor(intervalMs: number, log: KafkaLogLogger, group: string) {
    this.#intervalMs = intervalMs;
    this.#log = log;
    this.#group = group;
  }

  /** The handler finished everything before `next` in this partition (a Kafka topic name). */
  async handled(topic: string, partition: number, next: string, commit: CommitOffsets): Promise<void> {
    if (this.#intervalMs === 0) {
      await commit({ topics: [{ topic, partitions: [{ partition, offset: next }] }] });
      return;
    }
    this.#commit = commit;
    this.#pending.set(`${topic}|${partition}`, { topic, partition, offset: next });
    if (!this.#timer && !this.#running) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        void this.#run();
      }, this.#intervalMs);
    }
  }

  /** A rewind: what was recorded for the partition is past the position it goes back to. */
  drop(topic: string, partition: number): void {
    this.#pending.delete(`${topic}|${partition}`);
    if (this.#running) this.#withdrawn.add(`${topic}|${partition}`);
  }

  /**
   * A rebalance gave this member `assigned` (Kafka topic name → partitions): what it recorded
   * for any other partition is forgotten. Another member owns that partition now and commits
   * its own, newer offsets there; committing ours later would move the group's position back
   * (its next owner would redeliver what was already handled). Left uncommitted instead, the
   * new owner starts at the last commit, which positions stored with the effects make exact.
   */
  retain(assigned: ReadonlyMap<string, ReadonlySet<number>>): void {
    this.#assigned = assigned;
    for (const [id, p] of this.#pending) if (!assigned.get(p.topic)?.has(p.partition)) this.#pending.delete(id);
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
        // Sent again at the next turn, unless handled further meanwhile, rewound or no longer
        // this member's: an idle partition has no next batch to commit for it, and its lag
        // would read > 0 for good.
        for (const p of pending) {
          const id = `${p.topic}|${p.partition}`;
          if (this.#pending.has(id) || this.#withdrawn.has(id)) continue;
          if (this.#assigned && !this.#assigned.get(p.topic)?.has(p.partition)) continue;
          this.#pending.set(id, p);
        }
      }
    })().finally(() => {
      this.#running = null;
      this.#withdrawn.clear();
      // what was handled meanwhile goes out in the next commit
      if (this.#pending.size > 0 && !this.#timer) {
        this.#timer = setTimeout(() => {
          this.#timer = null;
          void this.#run();
        }, this.#intervalMs);
      }
    });
    return this.#running;
  }
}
