import { randomUUID } from 'node:crypto';

/**
 * What RebuildOnLoss calls. `ready`: whether hot state is present (BalanceStore.ready of
 * @tollgate/ledger); a rejection (Redis away) goes to `onCheckFailed`, and the next report
 * checks again. `rebuild`: one rebuild (`reload` false only at start, when pools and webhooks
 * were just loaded); a rejection goes to `onRebuildFailed`, and the next report retries.
 * `onLossConfirmed`: a report was confirmed and a rebuild starts (a log line).
 */
export interface RebuildOnLossDeps {
  ready: () => Promise<boolean>;
  rebuild: (reload: boolean) => Promise<void>;
  /**
   * A mark in the Redis a rebuild writes its records to (RedisBalanceStore.markRebuild,
   * rebuildMarked, unmarkRebuild): made before each rebuild, read after it. Absent (a store that
   * is never lost): no check. `set` rejecting fails the rebuild.
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
 * reads the whole warehouse once more.
 */
export class RebuildOnLoss {
  readonly #deps: RebuildOnLossDeps;
  #running: Promise<void> | null = null;
  #byHand = false;
  #checking = false;

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

  /** Starts a rebuild unless one is under way; answers the one under way (never rejects). */
  start(reload: boolean): Promise<void> {
    if (this.#running) return this.#running;
    void this.#track(() => this.#deps.rebuild(reload), false).catch((err: unknown) => this.#deps.onRebuildFailed?.(err));
    return this.#running!;
  }

  /**
   * Runs `fn` (a rebuild asked for by hand: `POST /ops/v1/rebuild`) as this process's one
   * rebuild: reports of a loss do nothing while it runs, and `running` is it. Answers
   * `{ value }` (fn's rejection passes through), or undefined without running it when a rebuild
   * is already under way (the route's 409).
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<{ value: T } | undefined> {
    if (this.#running) return undefined;
    return { value: await this.#track(fn, true) };
  }

  /**
   * Runs `run` as the one rebuild (`running` until it has ended), between a mark made before it
   * and read after it (`mark`): a mark gone at the end means Redis lost its data while it ran,
   * after what the rebuild put back before its load (pools, webhooks, the directory), so another
   * rebuild starts at once; the reports of that loss came while this one ran and did nothing.
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
      if (mark) {
        try {
          lost = !(await mark.present(token));
          if (!lost) await mark.clear(token);
        } catch (err) {
          this.#deps.onCheckFailed?.(err);
        }
      }
      this.#running = null;
      // only after a rebuild that ran to its end: a failed one is retried by the next report
      if (lost && (await work.then(() => true, () => false))) {
        this.#deps.onLostDuringRebuild?.();
        void this.start(true);
      }
    });
    return work;
  }

  /**
   * A loss was reported. Nothing happens while a rebuild is under way (a loss while it runs is
   * found by its mark at its end) or a report is being checked; otherwise the ready mark is
   * read, and a rebuild starts only if it is missing. Resolves when that is decided (the
   * rebuild itself runs on: `running`).
   */
  async reportLoss(): Promise<void> {
    if (this.#running || this.#checking) return;
    this.#checking = true;
    try {
      if (!(await this.#deps.ready()) && !this.#running) {
        this.#deps.onLossConfirmed?.();
        void this.start(true);
      }
    } catch (err) {
      this.#deps.onCheckFailed?.(err);
    } finally {
      this.#checking = false;
    }
  }
}
