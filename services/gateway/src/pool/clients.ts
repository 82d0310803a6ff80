// One `UpstreamClient` (connection pool) per upstream per process, rebuilt when the upstream's
// address, platform or credential changes.

import { gatewayError } from '@tollgate/anthropic';
import type { ResolvedUpstream } from '@tollgate/pool';
import type { UpstreamOptions } from '../deps.ts';
import { Upstream, type UpstreamClient } from '../upstream.ts';
import { OpenAIUpstream } from '../openai-upstream.ts';

/** Builds the client of an upstream of another platform than `anthropic`. */
export type PlatformClientFactory = (upstream: ResolvedUpstream, options: UpstreamOptions) => UpstreamClient;

/**
 * The clients of this process, by upstream id. The configured upstream (`default`, same URL and
 * key as `UPSTREAM_URL` / `UPSTREAM_API_KEY`) is `main`, the process's existing `Upstream` (tests
 * may give it their own dispatcher). Every other upstream gets its own `Upstream` with the
 * process's timeout, connection cap and redaction list; a replaced client is closed once its
 * requests in flight are done (undici's `close`).
 */
export class UpstreamClients {
  readonly #main: UpstreamClient;
  readonly #options: UpstreamOptions;
  readonly #platforms: Partial<Record<string, PlatformClientFactory>>;
  #clients = new Map<string, { fingerprint: string; client: UpstreamClient }>();

  /** `platforms`: clients by platform beyond `anthropic`; default `openai` → `OpenAIUpstream` (Chat Completions, translated) */
  constructor(main: UpstreamClient, options: UpstreamOptions, platforms: Partial<Record<string, PlatformClientFactory>> = {
    openai: (_u, o) => new OpenAIUpstream(o),
  }) {
    this.#main = main;
    this.#options = options;
    this.#platforms = platforms;
  }

  /** The client for `u`. Throws `upstream_error` (503) for a platform this gateway has no client for. */
  get(u: ResolvedUpstream): UpstreamClient {
    const r = u.record;
    if (r.platform === 'anthropic' && r.base_url === this.#options.url && u.apiKey === this.#options.apiKey) return this.#main;
    const fingerprint = `${r.platform}\n${r.base_url}\n${u.apiKey ?? ''}`;
    const known = this.#clients.get(r.id);
    if (known && known.fingerprint === fingerprint) return known.client;
    const options: UpstreamOptions = { ...this.#options, url: r.base_url, apiKey: u.apiKey };
    let client: UpstreamClient;
    if (r.platform === 'anthropic') client = new Upstream(options);
    else {
      const factory = this.#platforms[r.platform];
      if (!factory) throw gatewayError('upstream_error', `This gateway cannot call upstreams of platform ${r.platform}`);
      client = factory(u, options);
    }
    if (known) void known.client.close().catch(() => {});
    this.#clients.set(r.id, { fingerprint, client });
    return client;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#clients.values()].map((c) => c.client.close().catch(() => {})));
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.#clients.values()].map((c) => c.client.destroy().catch(() => {})));
  }
}
