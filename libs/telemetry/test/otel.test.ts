// The pieces of @tollgate/telemetry that feed OpenTelemetry: the Prometheus registry as OTLP
// metric data (PrometheusBridge), the GenAI attributes of the upstream span, and the consumer
// lag gauge. Values are exact; the bridge is read the way the OTLP metric reader reads it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataPointType, type HistogramMetricData, type MetricData, type SumMetricData } from '@opentelemetry/sdk-metrics';
import { SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import {
  createMetrics, genAiRequestAttributes, genAiSpanName, InMemorySpanExporter, PrometheusBridge, setGenAiResponse,
} from '@tollgate/telemetry';

async function collected(bridge: PrometheusBridge): Promise<Map<string, MetricData>> {
  const { resourceMetrics, errors } = await bridge.collect();
  assert.deepEqual(errors, []);
  return new Map(resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).map((m) => [m.descriptor.name, m]));
}

test('Prometheus counters become OTLP cumulative monotonic sums with the same name, labels and value', async () => {
  const m = createMetrics({ defaultMetrics: false });
  m.request('/v1/messages', 200, 'claude-sonnet-4-5-20250929', false, 0.2);
  m.request('/v1/messages', 200, 'claude-sonnet-4-5-20250929', false, 0.3);
  m.request('/v1/messages', 402, 'claude-sonnet-4-5-20250929', true, 0.01);
  const byName = await collected(new PrometheusBridge(m.registry));
  const requests = byName.get('tollgate_requests_total') as SumMetricData;
  assert.equal(requests.dataPointType, DataPointType.SUM);
  assert.equal(requests.isMonotonic, true);
  assert.deepEqual(requests.dataPoints.map((p) => [p.attributes, p.value]), [
    [{ route: '/v1/messages', status: '200', model: 'claude-sonnet-4-5-20250929', stream: 'false' }, 2],
    [{ route: '/v1/messages', status: '402', model: 'claude-sonnet-4-5-20250929', stream: 'true' }, 1],
  ]);
});

test('Prometheus histograms become OTLP histograms: cumulative buckets turned into per-bucket counts, sum and count kept', async () => {
  const m = createMetrics({ defaultMetrics: false });
  // Batches of 3, 7 and 700 events: buckets (≤1, ≤5, ≤10, ≤50, ≤100, ≤500, ≤1000, …) get 0,1,1,0,0,0,1.
  m.warehouseInsert(0.002, 3);
  m.warehouseInsert(0.004, 7);
  m.warehouseInsert(0.03, 700);
  const byName = await collected(new PrometheusBridge(m.registry));
  const batch = byName.get('tollgate_warehouse_batch_events') as HistogramMetricData;
  assert.equal(batch.dataPointType, DataPointType.HISTOGRAM);
  assert.equal(batch.dataPoints.length, 1);
  const h = batch.dataPoints[0]!.value;
  assert.deepEqual(h.buckets.boundaries, [1, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 50_000]);
  assert.deepEqual(h.buckets.counts, [0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0], 'one count per bucket, the last one above 50000');
  assert.equal(h.count, 3);
  assert.equal(h.sum, 710);
});

test('consumer lag is a gauge per group, topic and partition; a later measurement replaces the earlier one', async () => {
  const m = createMetrics({ defaultMetrics: false });
  m.consumerLag('ledger', 'usage', 0, 12);
  m.consumerLag('ledger', 'usage', 1, 3);
  m.consumerLag('ledger', 'usage', 0, 0);
  const text = await m.scrape();
  assert.deepEqual(text.split('\n').filter((l) => l.startsWith('tollgate_consumer_lag{')), [
    'tollgate_consumer_lag{group="ledger",topic="usage",partition="0"} 0',
    'tollgate_consumer_lag{group="ledger",topic="usage",partition="1"} 3',
  ]);
  const lag = (await collected(new PrometheusBridge(m.registry))).get('tollgate_consumer_lag')!;
  assert.equal(lag.dataPointType, DataPointType.GAUGE);
});

test('the upstream span: named "chat <model>", GenAI request and response attributes, input tokens include cached ones', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const span = provider.getTracer('t').startSpan(genAiSpanName('claude-sonnet-4-5-20250929'), {
    attributes: genAiRequestAttributes({ model: 'claude-sonnet-4-5-20250929', maxTokens: 1024, stream: true }),
  });
  setGenAiResponse(span, {
    model: 'claude-sonnet-4-5-20250929', id: 'msg_01ABC', stopReason: 'max_tokens',
    usage: { input: 100, output: 7, cacheRead: 30, cacheWrite5m: 20, cacheWrite1h: 5 },
  });
  span.end();
  const [s] = exporter.getFinishedSpans();
  assert.equal(s!.name, 'chat claude-sonnet-4-5-20250929');
  assert.deepEqual(s!.attributes, {
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': 'anthropic',
    'gen_ai.system': 'anthropic',
    'gen_ai.request.model': 'claude-sonnet-4-5-20250929',
    'gen_ai.request.max_tokens': 1024,
    'gen_ai.request.stream': true,
    'gen_ai.response.model': 'claude-sonnet-4-5-20250929',
    'gen_ai.response.id': 'msg_01ABC',
    'gen_ai.response.finish_reasons': ['max_tokens'],
    // 100 uncached + 30 read + 20 + 5 written
    'gen_ai.usage.input_tokens': 155,
    'gen_ai.usage.output_tokens': 7,
    'gen_ai.usage.cache_read.input_tokens': 30,
    'gen_ai.usage.cache_creation.input_tokens': 25,
  });
});

test('an answer without usage or with an over-long upstream id: those attributes are left off, never 0 or truncated', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const span = provider.getTracer('t').startSpan('chat m');
  setGenAiResponse(span, { model: 'm', id: 'x'.repeat(300), stopReason: null, usage: null });
  span.end();
  assert.deepEqual(exporter.getFinishedSpans()[0]!.attributes, { 'gen_ai.response.model': 'm' });
});
