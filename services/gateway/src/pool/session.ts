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
 * How long to pin the session (ms): 1 hour when any `cache_control` of the request (top level,
 * system blocks, tools, message content blocks) has `ttl: "1h"`, else 5 minutes — the prompt
 * cache lifetimes of Anthropic's "Prompt caching" documentation. Sliding: every request refreshes it.
 */
export function affinityTtlMs(body: unknown): number {
  return usesHourCache(body) ? AFFINITY_TTL_1H_MS : AFFINITY_TTL_MS;
}

function hourTtl(block: unknown): boolean {
  const cc = (block as { cache_control?: unknown } | null | undefined)?.cache_control;
  return typeof cc === 'object' && cc !== null && (cc as { ttl?: unknown }).ttl === '1h';
}

function usesHourCache(body: unknown): boolean {
  if (typeof body !== 'object' || body === null) return false;
  const b = body as { system?: unknown; tools?: unknown; messages?: unknown };
  if (hourTtl(b)) return true;
  const lists: unknown[] = [];
  if (Array.isArray(b.system)) lists.push(...b.system);
  if (Array.isArray(b.tools)) lists.push(...b.tools);
  if (Array.isArray(b.messages)) {
    for (const m of b.messages) {
      const content = (m as { content?: unknown } | null)?.content;
      if (Array.isArray(content)) lists.push(...content);
    }
  }
  return lists.some(hourTtl);
}
