import type { FastifyInstance } from 'fastify';
import { invalidRequest } from './errors.ts';

/**
 * The deepest nesting of objects and arrays the simulator accepts. Anthropic documents no limit;
 * a real Messages body is a few dozen levels deep, and a body nested 100,000 levels would
 * overflow the stack of any recursive walk (JSON.stringify included). The gateway refuses
 * beyond 512, so this is set above it: the gateway's limit is the one a test sees.
 */
export const MAX_JSON_DEPTH = 1024;

/** A parsed body refused for its depth; recorded as such so a test can see it arrived. */
export class TooDeepBody {
  readonly bytes: number;

  constructor(bytes: number) {
    this.bytes = bytes;
  }

  toJSON(): { simulator_rejected: string; bytes: number } {
    return { simulator_rejected: `body nests deeper than ${MAX_JSON_DEPTH} levels`, bytes: this.bytes };
  }
}

/** Whether `value` nests objects/arrays deeper than `max` levels (the top level is 1). Iterative: never recurses. */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<{ value: object; depth: number }> = [];
  if (typeof value === 'object' && value !== null) stack.push({ value, depth: 1 });
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (item.depth > max) return true;
    for (const child of Array.isArray(item.value) ? item.value : Object.values(item.value)) {
      if (typeof child === 'object' && child !== null) stack.push({ value: child, depth: item.depth + 1 });
    }
  }
  return false;
}

/**
 * Replaces Fastify's JSON body parser: plain JSON.parse (V8's parser does not recurse, so any
 * depth parses), then a depth check that turns a too-deep body into a `TooDeepBody` marker. The
 * request is still recorded and authenticated before the marker becomes a 400, like an API
 * that reads the body before it validates it.
 */
export function installJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, text, done) => {
    let value: unknown;
    try {
      value = JSON.parse(text as string);
    } catch (error) {
      done(invalidRequest(`request body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`), undefined);
      return;
    }
    done(null, nestsDeeperThan(value, MAX_JSON_DEPTH) ? new TooDeepBody(Buffer.byteLength(text as string)) : value);
  });
}
