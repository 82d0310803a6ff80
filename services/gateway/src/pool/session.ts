// Session affinity keys (issue 10): which requests belong to one conversation, and how long its
// prompt cache lives upstream, so a session stays on the upstream account whose cache it warmed.

import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** Pin lifetime of a session without 1-hour cache writes (ms): Anthropic's default cache TTL, 5 minutes. */
export const AFFINITY_TTL_MS = 5 * 60_000;
/** Pin lifetime when the request writes with `cache_control.ttl: "1h"` (ms). */
export const AFFINITY_TTL_1H_MS = 60 * 60_000;

/** Legacy Claude Code `metadata.user_id`: `user_<hash>_account_<uuid>_session_<uuid>`. */
const LEGACY_USER_ID = /_session_([0-9A-Za-z-]{1,128})$/;

/** Where a session key came from. */
export type SessionSource = 'header' | 'metadata' | 'key';

/**
 * The session of a request, in this order: the `x-claude-code-session-id` header (Claude Code
 * sends it on every request of a session); the session in `metadata.user_id`, in its JSON form
 * (`{"device_id":…,"account_uuid":…,"session_id":…}`, newer Claude Code) or its legacy form
 * (`user_<hash>_account_<uuid>_session_<uuid>`); else the calling key (`keyId`), so a client that
 * names no session still keeps one upstream. The result is `sha256(account, source, value)` in
 * hex: bounded, no client text in Redis keys, and two accounts that send the same session id
 * never share a pin.
 */
export function sessionKey(headers: IncomingHttpHeaders, body: unknown, accountId: string, keyId: string): { key: string; source: SessionSource } {
  const h = headers['x-claude-code-session-id'];
  const fromHeader = (Array.isArray(h) ? h[0] : h)?.trim();
  let source: SessionSource = 'key';
  let value = keyId;
  if (fromHeader) {
    source = 'header';
    value = fromHeader;
  } else {
    const fromMetadata = metadataSession(body);
    if (fromMetadata !== undefined) {
      source = 'metadata';
      value = fromMetadata;
    }
  }
  const key = createHash('sha256').update(accountId).update('\0').update(source === 'key' ? 'key' : 'session').update('\0').update(value).digest('hex');
  return { key, source };
}

/** The session id in `metadata.user_id`, JSON or legacy form; undefined when it has none. */
export function metadataSession(body: unknown): string | undefined {
  const metadata = (body as { metadata?: unknown } | null)?.metadata;
  const userId = (metadata as { user_id?: unknown } | null | undefined)?.user_id;
  if (typeof userId !== 'string' || userId === '') return undefined;
  if (userId.startsWith('{')) {
    try {
      const s = (JSON.parse(userId) as { session_id?: unknown }).session_id;
      return typeof s === 'string' && s !== '' ? s : undefined;
    } catch {
      return undefined;
    }
  }
  return LEGACY_USER_ID.exec(userId)?.[1];
}

/**
 * The pin of a session for one catalog model (`modelId`): prompt caches are per model upstream,
 * so each model of a session has its own pin. A side request for another model (Claude Code
 * sends haiku requests with the session's id) then neither moves nor shortens the main model's pin.
 */
export function pinKey(session: string, modelId: string): string {
  return `${session}\0${modelId}`;
}

/**
 * How long to pin the session (ms): 1 hour when any `cache_control` of the request has
 * `ttl: "1h"`, else 5 minutes — the prompt cache lifetimes of Anthropic's "Prompt caching"
 * documentation. Sliding: every request served by the pinned upstream refreshes it, and the
 * store never moves an expiry earlier (a 1-hour cache written before is still alive).
 */
export function affinityTtlMs(body: unknown): number {
  return usesHourCache(body) ? AFFINITY_TTL_1H_MS : AFFINITY_TTL_MS;
}

/** Fields that hold the caller's own JSON (tool inputs and schemas, metadata): a `cache_control` key there is data, not a breakpoint. */
const CALLER_DATA = new Set(['input', 'input_schema', 'metadata']);

/**
 * Whether any block of the request carries `cache_control: {ttl: "1h"}`. The Messages API
 * accepts `cache_control` at the top level (automatic caching), on system blocks, on every tool,
 * on message content blocks of every type, and on blocks nested in them (`tool_result.content`,
 * `search_result.content`, a document's `source.content`, MCP tool results): rather than a list
 * that goes stale with each new block type, every object of the body is visited (iteratively:
 * no recursion depth to exhaust) except the caller's own JSON (CALLER_DATA).
 */
export function usesHourCache(body: unknown): boolean {
  const stack: unknown[] = [body];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== 'object' || node === null) continue;
    if (Array.isArray(node)) {
      for (const item of node) if (typeof item === 'object' && item !== null) stack.push(item);
      continue;
    }
    for (const [k, v] of Object.entries(node)) {
      if (k === 'cache_control') {
        if (typeof v === 'object' && v !== null && (v as { ttl?: unknown }).ttl === '1h') return true;
      } else if (!CALLER_DATA.has(k) && typeof v === 'object' && v !== null) {
        stack.push(v);
      }
    }
  }
  return false;
}
