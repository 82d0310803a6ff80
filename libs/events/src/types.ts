// The events that carry money and control state through the log. Every event has a unique
// `event_id`; consumers are idempotent by it. Money is always an integer count of
// micro-credits, carried as a decimal string so that JSON never rounds it.

import type { Dimension } from '@tollgate/pricing';

export type Topic = 'usage' | 'ledger' | 'control';

/**
 * How a metered request ended; decides nothing about cost (cost comes from tokens). README,
 * "Settlement": `ok` answered and delivered; `client_disconnect` answered, the client left
 * before the answer was delivered; `usage_anomaly` answered and charged, but the upstream's
 * usage broke a rule (see `anomalies`); `unmetered` a 2xx answer without readable usage, charged
 * 0; `upstream_error` / `stream_error` the upstream failed.
 */
export type UsageStatus = 'ok' | 'upstream_error' | 'client_disconnect' | 'stream_error' | 'usage_anomaly' | 'unmetered';

/** What every usage event carries, whatever its version: who, which model, what it cost, how it ended. */
export interface UsageEventBase {
  type: 'usage';
  /** the request id */
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
  /** what the account is charged: integer micro-credits, decimal string */
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
   * The upstream (`UpstreamRecord.id` of @tollgate/pool, `default` for UPSTREAM_URL) that served
   * the request, or whose error the client got when every attempt failed (issue 10). `''` when no
   * upstream was tried (503 `overloaded`: every upstream at its max_concurrency), the warehouse
   * column's default. Absent only on events of gateways before issue 10.
   */
  upstream_id?: string;
  /**
   * Upstream attempts this request made (failover before the first byte: 1 + failovers, at most
   * `UPSTREAM_MAX_ATTEMPTS`); 0 when no upstream was tried; absent on events of gateways before
   * issue 10. Only the serving attempt is billed.
   */
  attempts?: number;
  /**
   * Usage anomalies of this request (`UsageAnomaly` names of @tollgate/anthropic, sorted, each
   * once): what the upstream reported broke a rule and how it was settled. Absent or empty: none.
   */
  anomalies?: string[];
}

/**
 * Version 1 of the usage event (no `v` field): the five token classes as flat fields. Still
 * written by gateways of before issue 7 and stored in Kafka and the warehouse; readers take it
 * through `toV2`. One per request that reached the upstream. `event_id` is the request id.
 */
export interface UsageEventV1 extends UsageEventBase {
  v?: undefined;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_5m_tokens: number;
  cache_write_1h_tokens: number;
}

/** Per billable dimension (`DIMENSIONS` of @tollgate/pricing): tokens, requests or seconds. */
export type UsageQuantities = Record<Dimension, number>;

/** One `usage.iterations` entry (a fallback, advisor or compaction sub-call), priced at its own model. */
export interface UsageIteration {
  /** e.g. `message`, `advisor_message`, `compaction` */
  type: string;
  /** the model that served it, as the upstream named it */
  model: string;
  /** the catalog model it was priced at; null when the name did not resolve (then listed in `unpriced`) */
  catalog_model: string | null;
  quantities: UsageQuantities;
  /** this iteration's share in µc, rounded up on its own (display; the request rounds once) */
  cost_micros: string;
}

/**
 * Version 2 of the usage event (issue 7): every billable dimension, the serving model, the
 * response's pricing conditions, and the prices applied, so a bill can be recomputed later
 * (`tollgate rerate`). Money is integer µc as decimal text; `unit_prices` are exact decimals.
 */
export interface UsageEventV2 extends UsageEventBase {
  v: 2;
  /** the response's top-level `model` (differs from the request's on a fallback); null when none was read */
  served_model: string | null;
  /** totals over the whole request (every iteration), per dimension */
  quantities: UsageQuantities;
  /** `usage.iterations`, each priced at its own model; [] when the upstream reported none */
  iterations: UsageIteration[];
  /** response `usage.service_tier` (`standard`, `priority`, `batch`) */
  service_tier: string | null;
  /** response `usage.inference_geo` (`global`, `us`) */
  inference_geo: string | null;
  /** response `usage.speed` (`standard`, `fast`) */
  speed: string | null;
  /** the response's `stop_reason` (`refusal` before any output is charged 0) */
  stop_reason: string | null;
  /** thinking tokens, for analytics only: they are part of `quantities.output`, never priced twice */
  thinking_tokens: number | null;
  /** the operator's own cost at the upstream's list prices, integer µ of `upstream_currency`; null when unknown */
  upstream_cost_micros: string | null;
  /** ISO 4217 code of `upstream_cost_micros` (e.g. `USD`); null when unknown */
  upstream_currency: string | null;
  /** id of the price book version applied (12 hex digits); `v1` for a normalised version 1 event */
  price_version: string;
  /** the price list applied: `default` or the account's list name */
  price_list: string;
  /** per dimension priced at the serving model: µc per MTok (tokens) or per unit, after tier, multipliers and list; exact decimals */
  unit_prices: Record<string, string>;
  /** the prompt-size tier applied (e.g. `long_context`), or null */
  tier: string | null;
  /** the multipliers applied, in catalog order (e.g. `batch`, `us_geo`) */
  multipliers: string[];
  /** what was reported but not priced (a dimension, `speed:fast`, `model:<name>`, an unknown usage field): never silently free */
  unpriced: string[];
}

/** A usage event of either version; consumers that need every field read it through `toV2`. */
export type UsageEvent = UsageEventV1 | UsageEventV2;

/**
 * A catalog version the gateway started pricing with (`PriceBook` of @tollgate/pricing). The
 * warehouse keeps it in `price_versions` so stored events can be re-priced under the exact
 * prices they were charged at. `event_id` is `price_version:<id>:<effective_at>`.
 */
export interface PriceVersionEvent {
  type: 'price_version';
  event_id: string;
  ts: number;
  /** the catalog's content id */
  id: string;
  /** epoch ms from which it priced requests */
  effective_at: number;
  /** the validated catalog document (`catalog.document`) */
  catalog: unknown;
}

/** `grant`: credit given; `top_up`: credit the customer paid for; `refund`: money back; `adjustment`: a signed correction. */
export type LedgerKind = 'grant' | 'top_up' | 'adjustment' | 'refund';

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

/**
 * `suspended`: the account's keys are refused with 403 `account_suspended` (the customer is told);
 * `disabled`: refused like an unknown key (401 `invalid_api_key`).
 */
export type AccountStatus = 'active' | 'suspended' | 'disabled';
/** `disabled`: refused with 401 `invalid_api_key` and may be re-enabled; `revoked`: final. */
export type KeyStatus = 'active' | 'disabled' | 'revoked';
/** How the gateway admits a request whose worst case exceeds what the account has available (issue 8). */
export type AdmissionPolicy = 'strict' | 'clamp';

export interface AccountRecord {
  id: string;
  name: string;
  status: AccountStatus;
  created_at: number;
  /** the catalog price list the account is charged at (`PATCH /admin/v1/accounts/:id {price_list}`); absent or null: the catalog's own prices */
  price_list?: string | null;
  // Issue 8. Every field below is optional so that records written before it still decode; an
  // absent field reads as null (no limit, config default). Money fields are integer
  // MICRO-credits as decimal strings (the control API speaks decimal credits).
  /** the account's plan id (`PlanRecord.id`); null: the operator's `DEFAULT_PLAN` */
  plan_id?: string | null;
  /** issue 10: the upstream group (`GroupRecord.id` of @tollgate/pool) its keys use; null: the default group */
  group_id?: string | null;
  /** spend limit per UTC day, µc (decimal string); null: none */
  daily_credits?: string | null;
  /** spend limit per UTC calendar month, µc; null: none */
  monthly_credits?: string | null;
  /** how far below zero `available` may go, µc (≥ 0); null: not at all */
  overdraft_credits?: string | null;
  /** reserved (a low-balance notice threshold), µc; carried, not acted on yet */
  low_balance_credits?: string | null;
  /** null: the gateway's `ADMISSION_POLICY` */
  admission_policy?: AdmissionPolicy | null;
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
  // Issue 8; optional like the account's (absent = null / empty). Money in µc decimal strings.
  /** overrides the account's plan; null: the account's */
  plan_id?: string | null;
  /** issue 10: overrides the account's upstream group; null: the account's */
  group_id?: string | null;
  /** spend limit per UTC hour, µc; null: none */
  hourly_credits?: string | null;
  /** spend limit per UTC day, µc; null: none */
  daily_credits?: string | null;
  /** spend limit over the key's life, µc; null: none */
  total_credits?: string | null;
  /** CIDRs (IPv4 / IPv6, normalised `addr/len`) a request must come from; empty or absent: anywhere */
  ip_allowlist?: string[];
  /** catalog model ids the key may use (aliases resolved at write); empty or absent: every model */
  allowed_models?: string[];
  /** epoch ms from which the key is refused (401 `key_expired`); null: never */
  expires_at?: number | null;
  version: number;
}

/**
 * A plan (`/admin/v1/plans`): rate-limit windows assigned to accounts and keys. Each limit is a
 * whole number ≥ 0 or null (unlimited): requests per fixed 60 s / 5 h / 7 d window, estimated
 * tokens per 60 s, requests in flight. `deleted` is a tombstone (a deleted seed plan stays hidden).
 */
export interface PlanRecord {
  id: string;
  name: string;
  requests_per_minute: number | null;
  requests_per_5h: number | null;
  requests_per_week: number | null;
  tokens_per_minute: number | null;
  concurrent_requests: number | null;
  created_at: number;
  deleted?: boolean;
  /** monotonically increasing per record; the highest version wins */
  version: number;
}

export type ControlEvent =
  | { type: 'account'; event_id: string; ts: number; account: AccountRecord }
  | { type: 'key'; event_id: string; ts: number; key: KeyRecord }
  | { type: 'plan'; event_id: string; ts: number; plan: PlanRecord }
  | PriceVersionEvent;

export type AnyEvent = UsageEvent | LedgerEvent | ControlEvent;
