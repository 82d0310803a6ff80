export {
  startTracing, injectContext, extractContext, inSpan, withSpan, failSpan, noopTracer,
  SpanKind, SpanStatusCode, ROOT_CONTEXT, context, trace, InMemorySpanExporter,
} from './tracing.ts';
export type { Tracing, TracingOptions, Tracer, Span, SpanExporter, Attributes, Context, ReadableSpan } from './tracing.ts';
export { GEN_AI, genAiRequestAttributes, genAiSpanName, setGenAiResponse } from './genai.ts';
export type { GenAiUsage } from './genai.ts';
export { PrometheusBridge } from './prom-bridge.ts';
export { MAX_UNPRICED_LABELS, Metrics, createMetrics } from './metrics.ts';
export type { TokenCounts } from './metrics.ts';
