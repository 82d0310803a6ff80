// Mixed SDK traffic for end-to-end tests: streaming and not, spread over gateways, with
// usage forced by simulator directives so each request's exact cost is known in advance
// (claude-sonnet-4-0 in the CNY catalog: 72 µcr per input token, 360 per output token, the
// prices of Sonnet 4.5, whose end of life (2026-11-30) makes the SDK warn on every call).
import Anthropic from '@anthropic-ai/sdk';

export interface AccountHandle {
  accountId: string;
  keyId: string;
  secret: string;
}

export interface Sent {
  id: string;
  accountId: string;
  cost: bigint;
  stream: boolean;
}

export interface TrafficOptions {
  gateways: string[];
  /** requests go round-robin over these (repeat one to weight it) */
  accounts: AccountHandle[];
  requests: number;
  concurrency: number;
  /** retry 503s (e.g. while Redis is away) this many times; a retried request is a new request */
  retries?: number;
  /** called between requests; return false to stop early */
  onProgress?: (done: number) => void;
  /**
   * keep sending past `requests` until this settles (a fault under way): the traffic then
   * overlaps the whole fault however fast the requests are
   */
  until?: Promise<unknown>;
}

export async function traffic(o: TrafficOptions): Promise<{ ok: Sent[]; failed: string[]; refused: number }> {
  const clients = new Map<string, Anthropic>();
  const client = (gw: string, secret: string) => {
    const k = `${gw} ${secret}`;
    let c = clients.get(k);
    if (!c) {
      c = new Anthropic({ apiKey: secret, baseURL: gw, maxRetries: 0, logLevel: 'error' });
      clients.set(k, c);
    }
    return c;
  };
  const ok: Sent[] = [];
  const failed: string[] = [];
  let refused = 0;
  let next = 0;
  let over = o.until === undefined;
  void o.until?.then(() => { over = true; }, () => { over = true; });
  const worker = async () => {
    for (;;) {
      if (next >= o.requests && over) return;
      const i = next++;
      const acct = o.accounts[i % o.accounts.length]!;
      const gw = o.gateways[i % o.gateways.length]!;
      const input = 50 + (i % 13);
      const output = 3 + (i % 5);
      const stream = i % 2 === 0;
      const params = { model: 'claude-sonnet-4-0', max_tokens: 32, messages: [{ role: 'user' as const, content: `t${i} [[sim input=${input} output=${output}]]` }] };
      const cost = BigInt(input * 72 + output * 360);
      for (let attempt = 0; ; attempt++) {
        try {
          const c = client(gw, acct.secret);
          let id: string | null | undefined;
          if (stream) {
            const s = c.messages.stream(params);
            await s.finalMessage();
            id = s.request_id;
          } else {
            id = (await c.messages.create(params))._request_id;
          }
          ok.push({ id: id!, accountId: acct.accountId, cost, stream });
          break;
        } catch (err) {
          const status = err instanceof Anthropic.APIError ? err.status : undefined;
          if (status === 503 && attempt < (o.retries ?? 0)) {
            refused++;
            await new Promise((r) => setTimeout(r, 250));
            continue;
          }
          failed.push(`${i}: ${String(err)}`);
          break;
        }
      }
      o.onProgress?.(ok.length + failed.length);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return { ok, failed, refused };
}
