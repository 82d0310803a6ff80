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
  onLossConfirmed?: () => void;
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
  #checking = false;

  constructor(deps: RebuildOnLossDeps) {
    this.#deps = deps;
  }

  /** The rebuild under way (it never rejects), or null. */
  get running(): Promise<void> | null {
    return this.#running;
  }

  /** Starts a rebuild unless one is under way; answers the one under way (never rejects). */
  start(reload: boolean): Promise<void> {
    this.#running ??= this.#deps.rebuild(reload)
      .catch((err: unknown) => this.#deps.onRebuildFailed?.(err))
      .finally(() => { this.#running = null; });
    return this.#running;
  }

  /**
   * Runs `fn` (a rebuild asked for by hand: `POST /ops/v1/rebuild`) as this process's one
   * rebuild: reports of a loss do nothing while it runs, and `running` is it. Answers
   * `{ value }` (fn's rejection passes through), or undefined without running it when a rebuild
   * is already under way (the route's 409).
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<{ value: T } | undefined> {
    if (this.#running) return undefined;
    const run = fn();
    this.#running = run.then(() => {}, () => {}).finally(() => { this.#running = null; });
    return { value: await run };
  }

  /**
   * A loss was reported. Nothing happens while a rebuild is under way or a report is being
   * checked; otherwise the ready mark is read, and a rebuild starts only if it is missing.
   * Resolves when that is decided (the rebuild itself runs on: `running`).
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
