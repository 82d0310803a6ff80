import { inSpan, noopTracer, type Attributes, type Span, type Tracer } from '@tollgate/telemetry';

/** A span that records nothing (no-op methods, an invalid context): what an untraced step is handed. */
export const UNTRACED_SPAN: Span = noopTracer.startSpan('untraced');

/**
 * `inSpan(tracer, name, { attributes: attributes() }, fn)` when the gateway traces (`tracer`
 * given), else `fn(UNTRACED_SPAN)` alone: without an exporter a request no longer pays for the
 * no-op span machinery (the API's proxy tracer, a context switch, an extra async frame) nor
 * for building attributes nobody reads (issue 11: per-request CPU). `fn`'s result and errors
 * are the same either way. `tracer` is `GatewayDeps.tracer` as configured (undefined: untraced).
 */
export function spanned<T>(
  tracer: Tracer | undefined, name: string, attributes: () => Attributes, fn: (span: Span) => Promise<T>,
): Promise<T> {
  return tracer === undefined || tracer === noopTracer ? fn(UNTRACED_SPAN) : inSpan(tracer, name, { attributes: attributes() }, fn);
}
