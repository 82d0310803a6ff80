import {
  context, propagation, ProxyTracerProvider, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace,
  type Attributes, type Context, type Span, type SpanOptions, type Tracer,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor, InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan, type SpanExporter,
} from '@opentelemetry/sdk-trace';

export { SpanKind, SpanStatusCode, context, trace, ROOT_CONTEXT, InMemorySpanExporter };
export type { Attributes, Context, Span, Tracer, SpanExporter, ReadableSpan };

export interface TracingOptions {
  serviceName: string;
  /** OTLP/HTTP base URL of a collector (`…/v1/traces` is appended), e.g. http://collector:4318 */
  otlpUrl?: string;
  /** exported span by span, as each ends (tests pass an InMemorySpanExporter) */
  exporter?: SpanExporter;
  /** extra resource attributes, e.g. `service.instance.id` */
  resource?: Attributes;
}

export interface Tracing {
  tracer: Tracer;
  /** exports what is buffered, then stops; spans started afterwards are dropped */
  shutdown(): Promise<void>;
}

/**
 * A tracer that records nothing and costs a few allocations per span: what every component
 * uses when tracing is off. It never turns into a real one (unlike `trace.getTracer`, whose
 * proxy starts recording as soon as anyone registers a global provider).
 */
export const noopTracer: Tracer = new ProxyTracerProvider().getTracer('tollgate-noop');

const propagator = new W3CTraceContextPropagator();

/**
 * Starts tracing for this process: one provider, an AsyncLocalStorage context manager (so the
 * active span survives `await`), and W3C trace context. Call it only when tracing is wanted:
 * with tracing off nothing is registered at all and the components run on `noopTracer`.
 */
export function startTracing(options: TracingOptions): Tracing {
  const exporter = options.exporter;
  const processor = exporter
    ? new SimpleSpanProcessor({ exporter })
    : new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: tracesUrl(options.otlpUrl) }) });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': options.serviceName, ...options.resource }),
    spanProcessors: [processor],
  });
  // Globals are process-wide; a second Tollgate in the same process (tests) reuses the first's
  // context manager, which is the same kind. Only what this call registered is unregistered.
  const ownsContext = context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const ownsProvider = trace.setGlobalTracerProvider(provider);
  const ownsPropagator = propagation.setGlobalPropagator(propagator);
  let stopped: Promise<void> | undefined;
  return {
    tracer: provider.getTracer('tollgate'),
    shutdown: () => (stopped ??= (async () => {
      await provider.shutdown();
      if (ownsProvider) trace.disable();
      if (ownsPropagator) propagation.disable();
      if (ownsContext) context.disable();
    })()),
  };
}

function tracesUrl(base: string | undefined): string | undefined {
  if (!base) return undefined;
  const trimmed = base.replace(/\/+$/, '');
  return trimmed.endsWith('/v1/traces') ? trimmed : `${trimmed}/v1/traces`;
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
