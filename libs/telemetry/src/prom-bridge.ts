// The Prometheus registry as an OpenTelemetry MetricProducer, so OTLP metrics carry exactly the
// instruments `GET /metrics` serves (same names, help, labels and values) without instrumenting
// twice. Counters become cumulative monotonic sums, gauges gauges, histograms explicit-bucket
// histograms (Prometheus buckets are cumulative, OTLP's are per bucket).
import { ValueType, type Attributes, type HrTime } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality, DataPointType, type CollectionResult, type DataPoint, type MetricData, type MetricProducer,
} from '@opentelemetry/sdk-metrics';
import type { Registry } from 'prom-client';

interface PromValue { value: number; labels: Record<string, string | number>; metricName?: string }
interface PromMetric { name: string; help: string; type: string; values: PromValue[] }
interface Histogram { buckets: { boundaries: number[]; counts: number[] }; sum: number; count: number }

const SCOPE = { name: 'tollgate-prometheus' };

/** Reads a prom-client registry at each collection (see the file comment for the mapping). */
export class PrometheusBridge implements MetricProducer {
  readonly #registry: Registry;
  /** cumulative series start at the bridge's creation, the process's start for our purposes */
  readonly #start: HrTime = hrTime();
  constructor(registry: Registry) { this.#registry = registry; }

  async collect(): Promise<CollectionResult> {
    const now = hrTime();
    const metrics: MetricData[] = [];
    for (const m of (await this.#registry.getMetricsAsJSON()) as unknown as PromMetric[]) {
      const descriptor = { name: m.name, description: m.help, unit: '', valueType: ValueType.DOUBLE };
      const point = <T>(labels: PromValue['labels'], value: T): DataPoint<T> => ({ startTime: this.#start, endTime: now, attributes: attrs(labels), value });
      if (m.type === 'counter') {
        metrics.push({
          descriptor, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.SUM,
          isMonotonic: true, dataPoints: m.values.map((v) => point(v.labels, v.value)),
        });
      } else if (m.type === 'gauge') {
        metrics.push({
          descriptor, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.GAUGE,
          dataPoints: m.values.map((v) => point(v.labels, v.value)),
        });
      } else if (m.type === 'histogram') {
        metrics.push({
          descriptor, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.HISTOGRAM,
          dataPoints: [...histograms(m).values()].map(({ labels, h }) => point(labels, h)),
        });
      }
      // Summaries have no OTLP equivalent in the SDK's data model; Tollgate defines none.
    }
    return {
      resourceMetrics: { resource: resourceFromAttributes({}), scopeMetrics: [{ scope: SCOPE, metrics }] },
      errors: [],
    };
  }
}

function attrs(labels: PromValue['labels']): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(labels)) out[k] = String(v);
  return out;
}

/** One OTLP histogram per label set: the `_bucket` series (cumulative, by `le`), `_sum` and `_count`. */
function histograms(m: PromMetric): Map<string, { labels: PromValue['labels']; h: Histogram }> {
  const byLabels = new Map<string, { labels: PromValue['labels']; cumulative: Array<[number, number]>; sum: number; count: number }>();
  for (const v of m.values) {
    const { le, ...labels } = v.labels;
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
    let e = byLabels.get(key);
    if (!e) byLabels.set(key, e = { labels, cumulative: [], sum: 0, count: 0 });
    if (v.metricName?.endsWith('_bucket')) e.cumulative.push([le === '+Inf' ? Infinity : Number(le), v.value]);
    else if (v.metricName?.endsWith('_sum')) e.sum = v.value;
    else if (v.metricName?.endsWith('_count')) e.count = v.value;
  }
  const out = new Map<string, { labels: PromValue['labels']; h: Histogram }>();
  for (const [key, e] of byLabels) {
    const sorted = e.cumulative.sort(([a], [b]) => a - b);
    const boundaries = sorted.filter(([le]) => le !== Infinity).map(([le]) => le);
    const counts: number[] = [];
    let below = 0;
    for (const [le, c] of sorted) {
      counts.push(c - below);
      below = c;
      if (le === Infinity) break;
    }
    // No +Inf bucket reported: the overflow is what the count has beyond the last bound.
    if (counts.length === boundaries.length) counts.push(e.count - below);
    out.set(key, { labels: e.labels, h: { buckets: { boundaries, counts }, sum: e.sum, count: e.count } });
  }
  return out;
}
