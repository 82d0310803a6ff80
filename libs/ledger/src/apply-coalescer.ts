import type { BalanceStore, BatchItem, BatchOutcome } from './balance-store.ts';

/**
 * Most events in one merged `applyBatch` call by default: the log's partition batch (KafkaLog's
 * `consumerBatchSize`, 1,000), so a merged call never holds Redis longer than one partition's
 * batch did before merging (a script blocks every other client meanwhile: the gateways' holds).
 */
export const DEFAULT_COALESCE_MAX_EVENTS = 1000;

/**
 * Merges the `applyBatch` calls the consumer's partitions make in the same turn of the event
 * loop into one store call (one round trip, one script run) and hands each caller its share of
 * the answer.
 *
 * Why: at a steady moderate rate each fetch brings a few events per partition, and before this
 * every partition batch was its own script call: at 1,000 events/s about 550 calls/s of ~2
 * events each. On a machine where every socket write and process wake-up is expensive (the
 * 2-core nested VM: merging saved ~57 µs of the consumer's CPU and ~50 µs of Redis's per call
 * avoided), the fixed costs per call and per fetch, not the events, are most of the ledger
 * consumer's CPU at such rates (bench/README.md, "The ledger consumer at a moderate rate"). A
 * drain is unchanged: its partition batches are already as big as a call may be (`maxEvents`).
 *
 * Exactness: events of different partitions are independent (an account's events are in one
 * partition of each topic, each partition has its own stored position, and today's concurrent
 * per-partition calls may already interleave in any order), and within a partition the events
 * keep their log order (one caller per partition at a time, its items in order). The store
 * answers a prefix of the merged items and stops after the first event neither applied nor a
 * duplicate (`BalanceStore.applyBatch`): the caller owning that event gets its outcomes up to
 * and including it; callers after it get the outcomes reached (possibly none) and call again
 * with the rest, as after any stop. A call that throws (an outage) fails every caller in it.
 */
export class ApplyCoalescer {
  readonly #store: Pick<BalanceStore, 'applyBatch'>;
  readonly #maxEvents: number;
  readonly #balanceAfter: boolean;
  #waiting: Array<{ items: BatchItem[]; resolve: (o: BatchOutcome[]) => void; reject: (err: unknown) => void }> = [];
  #scheduled = false;

  /**
   * `maxEvents`: most events per merged call (default DEFAULT_COALESCE_MAX_EVENTS); a caller's
   * own items are never split. `balanceAfter`: the store's option of the same name on every call
   * (one consumer asks it always or never).
   */
  constructor(store: Pick<BalanceStore, 'applyBatch'>, options: { maxEvents?: number; balanceAfter?: boolean } = {}) {
    this.#store = store;
    this.#maxEvents = Math.max(1, Math.floor(options.maxEvents ?? DEFAULT_COALESCE_MAX_EVENTS));
    this.#balanceAfter = options.balanceAfter === true;
  }

  /**
   * `store.applyBatch(items)`, merged with the other calls of this turn: the same
   * answer contract (a prefix of `items`' outcomes, in order), except that the prefix may be
   * empty when an earlier caller's event stopped the merged call: call again with the rest.
   * Rejects with the store's error when the merged call fails.
   */
  apply(items: BatchItem[]): Promise<BatchOutcome[]> {
    if (items.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.#waiting.push({ items, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        // After this turn's I/O callbacks and their promise jobs: the batches of one fetch all
        // reach their handlers in between.
        setImmediate(() => this.#send());
      }
    });
  }

  #send(): void {
    this.#scheduled = false;
    let waiting = this.#waiting;
    this.#waiting = [];
    while (waiting.length > 0) {
      // Whole callers, up to maxEvents (at least one).
      let take = 0;
      let count = 0;
      while (take < waiting.length && (take === 0 || count + waiting[take]!.items.length <= this.#maxEvents)) count += waiting[take++]!.items.length;
      const group = waiting.slice(0, take);
      waiting = waiting.slice(take);
      const items = group.length === 1 ? group[0]!.items : group.flatMap((w) => w.items);
      // Through a promise job: a store that threw instead of rejecting fails its callers, not
      // this setImmediate callback (which would strand them and the groups after them).
      Promise.resolve().then(() => this.#store.applyBatch(items, { balanceAfter: this.#balanceAfter })).then((outcomes) => {
        let at = 0;
        for (const w of group) {
          w.resolve(at >= outcomes.length ? [] : outcomes.slice(at, Math.min(outcomes.length, at + w.items.length)));
          at += w.items.length;
        }
      }, (err: unknown) => {
        for (const w of group) w.reject(err);
      });
    }
  }
}
