import {
  context, metrics as metricsApi, propagation, ProxyTracerProvider, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace,
  type Attributes, type Context, type Span, type SpanOptions, type Tracer,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPMetricExporter as OTLPMetricExporterGrpc } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPMetricExporter as OTLPMetricExporterJson } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as OTLPMetricExporterProto } from '@opentelemetry/exporter-metrics-otlp-proto';
import { defaultResource, envDetector, hostDetector, osDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { PeriodicExportingMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import type { Registry } from 'prom-client';
import { PrometheusBridge } from './prom-bridge.ts';

export { SpanKind, SpanStatusCode, context, trace, ROOT_CONTEXT, InMemorySpanExporter };
export type { Attributes, Context, Span, Tracer, SpanExporter, ReadableSpan };

export interface TracingOptions {
  serviceName: string;
  /**
   * Spans go to the exporter the standard environment names (`OTEL_TRACES_EXPORTER`,
   * `OTEL_EXPORTER_OTLP_*`, batched per `OTEL_BSP_*`); false: no spans at all (metrics only).
   * Default true. Ignored when `exporter` is given.
   */
  traces?: boolean;
  /** exported span by span, as each ends, instead of what the environment says (tests: InMemorySpanExporter) */
  exporter?: SpanExporter;
  /** resource attributes of this process, e.g. `service.instance.id`; `OTEL_RESOURCE_ATTRIBUTES` wins over them */
  resource?: Attributes;
  /**
   * Push this Prometheus registry's instruments over OTLP too, every `intervalMs` (each export
   * bounded by `timeoutMs`), with the protocol of `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` /
   * `OTEL_EXPORTER_OTLP_PROTOCOL` (default http/protobuf). `GET /metrics` is unaffected.
   */
  metrics?: { registry: Registry; intervalMs: number; timeoutMs: number };
}

export interface Tracing {
  /** this process's tracer; `noopTracer` when only metrics were asked for */
  tracer: Tracer;
  /** exports what is buffered (spans and a last metric push), then stops; spans started afterwards are dropped */
  shutdown(): Promise<void>;
}

/**
 * A tracer that records nothing and costs a few allocations per span: what every component
 * uses when tracing is off. It never turns into a real one (unlike `trace.getTracer`, whose
 * proxy starts recording as soon as anyone registers a global provider).
 */
export const noopTracer: Tracer = new ProxyTracerProvider().getTracer('tollgate-noop');

const propagator = new W3CTraceContextPropagator();
/** One OpenTelemetry SDK per process: its providers are process-wide globals. */
let started = false;

/**
 * Starts OpenTelemetry for this process with `@opentelemetry/sdk-node`, configured from the
 * standard environment (OTel "SDK environment variables" spec: `OTEL_SDK_DISABLED`,
 * `OTEL_EXPORTER_OTLP_*` endpoint / protocol / headers, `OTEL_BSP_*`, `OTEL_TRACES_SAMPLER` and
 * `_ARG`, `OTEL_RESOURCE_ATTRIBUTES`), which the SDK reads from `process.env` (libs/config has
 * checked them). Registers an AsyncLocalStorage context manager (the active span survives
 * `await`) and W3C trace context; no log signal (logs go to pino). Call it only when tracing or
 * OTLP metrics are wanted: with both off nothing is registered and components run on
 * `noopTracer`.
 * @throws Error when OpenTelemetry is already started in this process and not shut down.
 */
export function startTracing(options: TracingOptions): Tracing {
  if (started) throw new Error('OpenTelemetry is already started in this process; shut the other Tollgate down first');
  const traces = options.exporter !== undefined || options.traces !== false;
  const sdk = new NodeSDK({
    serviceName: options.serviceName,
    resource: defaultResource().merge(resourceFromAttributes({ ...options.resource })),
    // No process detector: it records the command line, which may carry secrets.
    resourceDetectors: [hostDetector, osDetector, envDetector],
    contextManager: new AsyncLocalStorageContextManager(),
    textMapPropagator: propagator,
    logRecordProcessors: [],
    metricReaders: options.metrics ? [metricReader(options.metrics)] : [],
    // Undefined: the SDK builds the exporter and batch processor from the environment.
    ...(options.exporter ? { spanProcessors: [new SimpleSpanProcessor({ exporter: options.exporter })] } : traces ? {} : { spanProcessors: [] }),
  });
  sdk.start();
  started = true;
  let stopped: Promise<void> | undefined;
  return {
    tracer: traces ? trace.getTracer('tollgate') : noopTracer,
    shutdown: () => (stopped ??= (async () => {
      try {
        await sdk.shutdown();
      } finally {
        // NodeSDK leaves its globals registered; a later start in this process (tests) needs them free.
        trace.disable();
        metricsApi.disable();
        propagation.disable();
        context.disable();
        started = false;
      }
    })()),
  };
}

/** A periodic OTLP push of the Prometheus registry, over the protocol the environment names. */
function metricReader(m: NonNullable<TracingOptions['metrics']>): PeriodicExportingMetricReader {
  const protocol = (process.env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL ?? process.env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf').trim();
  const exporter: PushMetricExporter = protocol === 'grpc' ? new OTLPMetricExporterGrpc()
    : protocol === 'http/json' ? new OTLPMetricExporterJson() : new OTLPMetricExporterProto();
  return new PeriodicExportingMetricReader({
    exporter, exportIntervalMillis: m.intervalMs, exportTimeoutMillis: Math.min(m.timeoutMs, m.intervalMs),
    metricProducers: [new PrometheusBridge(m.registry)],
  });
}

/** The active trace context as W3C headers (`traceparent`, `tracestate`); `{}` when there is none. */
export function injectContext(ctx: Context = context.active()): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagator.inject(ctx, carrier, {
    set: (c, key, value) => { c[key] = value; },
  });
  return carrier;
}

/** The trace context carried in W3C headers (event headers, HTTP headers); ROOT when absent. */
export function extractContext(headers: Readonly<Record<string, string | string[] | undefined>>): Context {
  if (headers.traceparent === undefined) return ROOT_CONTEXT;
  return propagator.extract(ROOT_CONTEXT, headers, {
    keys: (c) => Object.keys(c),
    get: (c, key) => c[key],
  });
}

/**
 * Runs `fn` inside a new active span that ends when `fn` settles; a throw marks it as an error
 * (the exception's type and message only: messages of our errors never carry credentials).
 */
export async function inSpan<T>(
  tracer: Tracer, name: string, options: SpanOptions, fn: (span: Span) => Promise<T>,
): Promise<T> {
  return tracer.startActiveSpan(name, options, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Marks a span as failed by an error, without the stack (kept in logs, not traces). */
export function failSpan(span: Span, err: unknown): void {
  if (!span.isRecording()) return;
  const e = err instanceof Error ? err : new Error(String(err));
  span.recordException({ name: e.name, message: e.message });
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
}

/**
 * Runs `fn` with `span` as the active span (whatever was active before, e.g. the publisher's
 * context in the in-process log, which calls consumers synchronously).
 */
export function withSpan<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(ROOT_CONTEXT, span), fn);
}
