// The events that carry money and control state through the log. Every event has a unique
// `event_id`; consumers are idempotent by it. Money is always an integer count of
// micro-credits, carried as a decimal string so that JSON never rounds it.

export type Topic = 'usage' | 'ledger' | 'control';

/**
 * How a metered request ended; decides nothing about cost (cost comes from tokens). README,
 * "Settlement": `ok` answered and delivered; `client_disconnect` answered, the client left
 * before the answer was delivered; `usage_anomaly` answered and charged, but the upstream's
 * usage broke a rule (see `anomalies`); `unmetered` a 2xx answer without readable usage, charged
 * 0; `upstream_error` / `stream_error` the upstream failed.
 */
export type UsageStatus = 'ok' | 'upstream_error' | 'client_disconnect' | 'stream_error' | 'usage_anomaly' | 'unmetered';

/** One per request that reached the upstream. `event_id` is the request id. */
export interface UsageEvent {
  type: 'usage';
  event_id: string;
  /** epoch milliseconds when the request arrived */
  ts: number;
  account_id: string;
  key_id: string;
  /** the model id the client asked for */
  model: string;
  /** the catalog entry it resolved to (prices come from here) */
  catalog_model: string;
  upstream_model: string;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_5m_tokens: number;
  cache_write_1h_tokens: number;
  /** integer micro-credits, decimal string */
  cost_micros: string;
  status: UsageStatus;
  http_status: number;
  latency_ms: number;
  /** time to first byte of the upstream body; null when nothing arrived */
  ttft_ms: number | null;
  stream: boolean;
  /** the upstream's own request id, when it sent one (printable ASCII, ≤ 128 chars; else null) */
  upstream_request_id: string | null;
  gateway_id: string;
  /**
   * Usage anomalies of this request (`UsageAnomaly` names of @tollgate/anthropic, sorted, each
   * once): what the upstream reported broke a rule and how it was settled. Absent or empty: none.
   */
  anomalies?: string[];
}

export type LedgerKind = 'grant' | 'adjustment' | 'refund';

/** A change of an account's prepaid balance that is not usage. */
export interface LedgerEvent {
  type: 'ledger';
  /** `credit:<account_id>:<reference>`: a repeated reference is the same event */
  event_id: string;
  ts: number;
  account_id: string;
  kind: LedgerKind;
  /** signed integer micro-credits, decimal string */
  amount_micros: string;
  reference: string;
}

export type AccountStatus = 'active' | 'disabled';
export type KeyStatus = 'active' | 'revoked';

export interface AccountRecord {
  id: string;
  name: string;
  status: AccountStatus;
  created_at: number;
  /** monotonically increasing per record; the highest version wins */
  version: number;
}

export interface KeyRecord {
  id: string;
  account_id: string;
  name: string;
  /** first characters of the secret, for display only */
  prefix: string;
  /** hex HMAC-SHA256 of the secret under the server key */
  hash: string;
  status: KeyStatus;
  created_at: number;
  revoked_at: number | null;
  version: number;
}

export type ControlEvent =
  | { type: 'account'; event_id: string; ts: number; account: AccountRecord }
  | { type: 'key'; event_id: string; ts: number; key: KeyRecord };

export type AnyEvent = UsageEvent | LedgerEvent | ControlEvent;
