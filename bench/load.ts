// Closed-loop HTTP load generator: `concurrency` workers, each sending its next request as soon
// as the previous one is fully read. Latencies are kept as raw samples and percentiles are
// computed exactly from the sorted samples (nearest rank), so no histogram bucketing error.
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

export interface LoadTarget {
  /** e.g. http://127.0.0.1:8080 */
  origin: string;
  path: string;
  headers: Record<string, string>;
  body: string;
  /** read the body as a stream and record time to first byte as well */
  stream: boolean;
  /**
   * Checked against the tail of every 2xx body (the last bytes received); a body that fails
   * counts as an error. Catches streams that end early with HTTP 200.
   */
  bodyEndsWith?: string;
}

export interface LoadOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** called once a second with the progress so far */
  onProgress?: (p: Progress) => void;
  /** stops the run early (SIGINT) */
  signal?: AbortSignal;
  /** called for every successful response once its body is read in full (e.g. to sample request ids) */
  onResponse?: (r: ResponseInfo) => void;
}

export interface ResponseInfo {
  headers: Record<string, string | string[] | undefined>;
  /** performance.now() when the body was read in full */
  completedAt: number;
  /** started in the measurement window (not during the warmup) */
  measured: boolean;
}

export interface Progress {
  phase: 'warmup' | 'measure';
  /** seconds since the phase began */
  elapsedS: number;
  /** completed requests in this phase so far */
  done: number;
  errors: number;
  /** completed requests per second over the last interval */
  rate: number;
}

export interface Summary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface LoadResult {
  /** requests started in the measurement window and completed */
  requests: number;
  /** of those, non-2xx, transport failures or truncated bodies */
  errors: number;
  errorRate: number;
  /** measured requests / seconds from the window's start to the last measured completion */
  throughput: number;
  elapsedS: number;
  /** time to last byte, ms, successful measured requests only */
  latency: Summary;
  /** time to first body byte, ms (streams only) */
  ttfb: Summary | undefined;
  /** every request that completed with a 2xx and a valid body, warmup included */
  okTotal: number;
  /** every request that failed, warmup included */
  errorTotal: number;
  /** a few distinct error descriptions, for diagnosis */
  errorSamples: string[];
}

/** A growable Float64Array: a few million samples without boxing every number. */
class Samples {
  #data = new Float64Array(1 << 16);
  #length = 0;

  push(v: number): void {
    if (this.#length === this.#data.length) {
      const next = new Float64Array(this.#data.length * 2);
      next.set(this.#data);
      this.#data = next;
    }
    this.#data[this.#length++] = v;
  }

  get length(): number {
    return this.#length;
  }

  sorted(): Float64Array {
    return this.#data.slice(0, this.#length).sort();
  }
}

/** The median of `xs` (any order; the mean of the middle two when even), NaN when empty. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Nearest-rank percentile of ascending `sorted`: the smallest sample ≥ p% of all samples. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(samples: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const n = sorted.length;
  return {
    count: n,
    min: n ? sorted[0]! : Number.NaN,
    mean: n ? sum / n : Number.NaN,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: n ? sorted[n - 1]! : Number.NaN,
  };
}

function summaryOf(s: Samples): Summary {
  return summarize(s.sorted());
}

const TAIL_BYTES = 64;

/** Runs warmup then measurement against `target`; resolves when every worker has stopped. */
export async function runLoad(target: LoadTarget, options: LoadOptions): Promise<LoadResult> {
  const { concurrency, warmupMs, durationMs } = options;
  // One connection per worker, so connection setup and queueing never hide in the numbers;
  // no pipelining, like every real Anthropic client.
  const pool = new Pool(target.origin, {
    connections: concurrency,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });

  const latency = new Samples();
  const ttfb = new Samples();
  const errorSamples = new Set<string>();
  let okTotal = 0;
  let errorTotal = 0;
  let measured = 0;
  let measuredErrors = 0;
  let completions = 0;
  let lastCompletion = 0;

  const start = performance.now();
  const measureFrom = start + warmupMs;
  const stopAt = measureFrom + durationMs;

  const noteError = (what: string, inWindow: boolean) => {
    errorTotal++;
    if (inWindow) measuredErrors++;
    if (errorSamples.size < 5) errorSamples.add(what);
  };

  const one = async (): Promise<void> => {
    const t0 = performance.now();
    const inWindow = t0 >= measureFrom;
    let first = -1;
    let tail = '';
    try {
      const res = await pool.request({
        path: target.path,
        method: 'POST',
        headers: target.headers,
        body: target.body,
      });
      if (target.stream) {
        for await (const chunk of res.body) {
          if (first < 0) first = performance.now();
          tail = (tail + (chunk as Buffer).toString('latin1')).slice(-TAIL_BYTES);
        }
      } else {
        const text = await res.body.text();
        tail = text.slice(-TAIL_BYTES);
      }
      const t1 = performance.now();
      completions++;
      if (inWindow) {
        measured++;
        lastCompletion = t1;
      }
      if (res.statusCode < 200 || res.statusCode > 299) {
        noteError(`HTTP ${res.statusCode}: ${tail.trim()}`, inWindow);
        return;
      }
      if (target.bodyEndsWith !== undefined && !tail.trimEnd().endsWith(target.bodyEndsWith)) {
        noteError(`body does not end with ${JSON.stringify(target.bodyEndsWith)}: …${tail.trim()}`, inWindow);
        return;
      }
      okTotal++;
      options.onResponse?.({ headers: res.headers, completedAt: t1, measured: inWindow });
      if (inWindow) {
        latency.push(t1 - t0);
        if (target.stream) ttfb.push((first < 0 ? t1 : first) - t0);
      }
    } catch (err) {
      const t1 = performance.now();
      completions++;
      if (inWindow) {
        measured++;
        lastCompletion = t1;
      }
      noteError(err instanceof Error ? `${err.name}: ${err.message}` : String(err), inWindow);
    }
  };

  const worker = async (): Promise<void> => {
    while (performance.now() < stopAt && !options.signal?.aborted) await one();
  };

  let lastCompletions = 0;
  let lastTick = start;
  const ticker = setInterval(() => {
    const now = performance.now();
    const rate = ((completions - lastCompletions) * 1000) / (now - lastTick);
    lastCompletions = completions;
    lastTick = now;
    // A tick a hair after the boundary still describes the warmup second that just ended.
    if (now < measureFrom + 250) {
      options.onProgress?.({ phase: 'warmup', elapsedS: Math.round((now - start) / 1000), done: completions, errors: errorTotal, rate });
    } else {
      options.onProgress?.({ phase: 'measure', elapsedS: Math.round((now - measureFrom) / 1000), done: measured, errors: measuredErrors, rate });
    }
  }, 1000);

  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    clearInterval(ticker);
    await pool.close();
  }

  const elapsedS = Math.max(lastCompletion - measureFrom, 1) / 1000;
  return {
    requests: measured,
    errors: measuredErrors,
    errorRate: measured ? measuredErrors / measured : 0,
    throughput: measured / elapsedS,
    elapsedS,
    latency: summaryOf(latency),
    ttfb: target.stream ? summaryOf(ttfb) : undefined,
    okTotal,
    errorTotal,
    errorSamples: [...errorSamples],
  };
}

// Run directly (`node bench/load.ts`): say what to run instead of silently doing nothing.
if (import.meta.main) (await import('./cli.ts')).notACommand(import.meta, 'npm run bench (see npm run bench -- --help)');
