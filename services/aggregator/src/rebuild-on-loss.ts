import { randomUUID } from 'node:crypto';

/**
 * What RebuildOnLoss calls. `ready`: whether hot state is present (BalanceStore.ready of
 * @tollgate/ledger); a rejection (Redis away) goes to `onCheckFailed`, and the next report
 * checks again. `rebuild`: one rebuild, pools and webhooks first; a rejection goes to
 * `onRebuildFailed`, and the next report retries. `onLossConfirmed`: a report was confirmed and
 * a rebuild starts (a log line). Callbacks that throw are ignored.
 */
export interface RebuildOnLossDeps {
  ready: () => Promise<boolean>;
  rebuild: () => Promise<void>;
  /**
   * A mark in the Redis a rebuild writes its records to (RedisBalanceStore.markRebuild,
   * rebuildMarked, unmarkRebuild; the store's load refuses while it is gone): made before each
   * rebuild, read after it. Absent (a store that is never lost): no check. `set` rejecting fails
   * the rebuild.
   */
  mark?: { set(token: string): Promise<void>; present(token: string): Promise<boolean>; clear(token: string): Promise<void> };
  onLossConfirmed?: () => void;
  /** a rebuild's mark was gone at its end (Redis lost its data while it ran): another starts (a log line) */
  onLostDuringRebuild?: () => void;
  onCheckFailed?: (err: unknown) => void;
  onRebuildFailed?: (err: unknown) => void;
}

/**
 * When the process that owns the warehouse rebuilds hot state: one rebuild at a time, and a
 * reported loss (a ledger consumer's `not_ready`, the owner's own watch of the ready mark) only
 * once the ready mark reads missing, after any rebuild under way has ended.
 *
 * Without that confirmation a consumer's `not_ready`, read just before a rebuild's load and
 * handed over just after the rebuild ended, started a second full rebuild of a state already
 * rebuilt: the operator routes answered 503 again through it (a failed CI), and at scale it
 * reads the whole warehouse once more. A loss while a rebuild runs is found by the rebuild's
 * mark (`mark`) at its end, and another rebuild starts then.
 */
export class RebuildOnLoss {
  readonly #deps: RebuildOnLossDeps;
  #running: Promise<void> | null = null;
  #byHand = false;
  #checking = false;
  #stopped = false;
  /** a rebuild's mark could not be read at its end: the next report rebuilds without asking `ready` */
  #rebuildDue = false;

  constructor(deps: RebuildOnLossDeps) {
    this.#deps = deps;
  }

  /** The rebuild under way (it never rejects), or null. */
  get running(): Promise<void> | null {
    return this.#running;
  }

  /**
   * True while a rebuild runs that was started for a state not there (at start, or after a
   * loss): the process is not ready meanwhile. A rebuild by hand of a state that is there leaves
   * it serving (its readiness is the state's own).
   */
  get recovering(): boolean {
    return this.#running !== null && !this.#byHand;
  }

  /**
   * Starts a rebuild unless one is under way (or `stop` was called); answers the one under way,
   * which never rejects (resolved at once after `stop`).
   */
  start(): Promise<void> {
    if (this.#running) return this.#running;
    if (this.#stopped) return Promise.resolve();
    void this.#track(() => this.#deps.rebuild(), false).catch((err: unknown) => this.#call(() => this.#deps.onRebuildFailed?.(err)));
    return this.#running!;
  }

  /**
   * Runs `fn` (a rebuild asked for by hand: `POST /ops/v1/rebuild`) as this process's one
   * rebuild: reports of a loss do nothing while it runs, and `running` is it. Answers
   * `{ value }` once it has ended, its mark checked (fn's rejection passes through), or
   * undefined without running it when a rebuild is already under way, or after `stop` (the
   * route's 409).
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<{ value: T } | undefined> {
    if (this.#running || this.#stopped) return undefined;
    const work = this.#track(fn, true);
    const ended = this.#running!;
    try {
      return { value: await work };
    } finally {
      await ended;
    }
  }

  /**
   * No rebuild starts from now on (the process stops); resolves once the one under way, and a
   * second one its end may have started, have ended.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    while (this.#running) await this.#running;
  }

  /**
   * Runs `run` as the one rebuild (`running` until it has ended), between a mark made before it
   * and read after it (`mark`): a mark gone at the end means Redis lost its data while it ran, after what the rebuild put back before its load (pools, webhooks, the
   * directory; the load itself refuses then), so another rebuild starts at once: the reports of
   * that loss came while this one ran and did nothing. A mark that cannot be read (Redis away)
   * makes the next report rebuild.
   */
  #track<T>(run: () => Promise<T>, byHand: boolean): Promise<T> {
    const mark = this.#deps.mark;
    const token = randomUUID();
    const work = (async () => {
      await mark?.set(token);
      return run();
    })();
    this.#byHand = byHand;
    this.#running = work.then(() => {}, () => {}).then(async () => {
      let lost = false;
      try {
        if (mark) {
          try {
            lost = !(await mark.present(token));
          } catch (err) {
            // Unknown (Redis away): rebuilt again at the next report rather than left without
            // its records, and not at once (that would spin while Redis stays away).
            this.#rebuildDue = true;
            this.#call(() => this.#deps.onCheckFailed?.(err));
          }
          await mark.clear(token).catch(() => {});
        }
      } finally {
        this.#running = null;
      }
      if (lost && !this.#stopped) {
        this.#call(() => this.#deps.onLostDuringRebuild?.());
        void this.start();
      }
    });
    return work;
  }

  /**
   * A loss was reported. Nothing happens while a rebuild is under way (a loss while it runs is
   * found by its mark at its end), a report is being checked, or after `stop`; after a rebuild
   * whose mark could not be read, a rebuild starts; otherwise the ready mark is read, and a
   * rebuild starts only if it is missing. Resolves when that is
   * decided (the rebuild itself runs on: `running`).
   */
  async reportLoss(): Promise<void> {
    if (this.#running || this.#checking || this.#stopped) return;
    if (this.#rebuildDue) {
      this.#rebuildDue = false;
      this.#call(() => this.#deps.onLostDuringRebuild?.());
      void this.start();
      return;
    }
    this.#checking = true;
    try {
      if (!(await this.#deps.ready()) && !this.#running && !this.#stopped) {
        this.#call(() => this.#deps.onLossConfirmed?.());
        void this.start();
      }
    } catch (err) {
      this.#call(() => this.#deps.onCheckFailed?.(err));
    } finally {
      this.#checking = false;
    }
  }

  /** A callback whose throw is ignored (a log line must not wedge the rebuilds). */
  #call(fn: () => void): void {
    try {
      fn();
    } catch {
      // ignored
    }
  }
}
