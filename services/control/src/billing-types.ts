// The shapes billing produces and the renderers (CSV, PDF, Parquet, JSON) consume. Money is
// always exact decimal text: µc as integer text, credits and currency as fixed-point text.

/**
 * One invoice line. Usage lines are one per model × billable dimension × unit price (a month
 * may see several prices for one dimension: a price change, a tier, a multiplier); the other
 * sections have `model`/`dimension` '' and `quantity` 1 unless said otherwise.
 */
export interface InvoiceLine {
  account_id: string;
  /** the invoice month, `YYYY-MM` (UTC) */
  month: string;
  /**
   * `usage`: this month's usage; `late_usage`: usage dated in an earlier, closed month that
   * reached the warehouse after that month closed (`source_month` says which);
   * `rounding`: Σ per-request charges − Σ exact usage line amounts (each request is rounded up
   * once, to a whole µc; a request charged its hold in place of unreadable usage shows here too);
   * `refund`, `adjustment`: ledger entries of those kinds (credits back to the account are negative amounts).
   */
  section: 'usage' | 'late_usage' | 'rounding' | 'refund' | 'adjustment';
  /**
   * the month the line's facts are dated in: `month`, except for late facts of a closed month
   * (`late_usage`, and the `rounding`, `refund` and `adjustment` lines of such facts)
   */
  source_month: string;
  /** catalog model id ('' for non-usage lines) */
  model: string;
  /** billable dimension key of DIMENSIONS (`input`, `output`, `cache_read`, …; '' for non-usage lines) */
  dimension: string;
  /** tokens, requests or seconds, as integer text */
  quantity: string;
  /** credits per million tokens (token dimensions) or per unit, exact decimal text ('' for non-usage lines) */
  unit_price: string;
  /** credits, exact decimal text with 6 decimals (e.g. "12.345678"); what the account pays for the line */
  amount: string;
  /** the same amount in µc, integer text */
  amount_micros: string;
}

/** An account's invoice for one month. */
export interface Invoice {
  account_id: string;
  month: string;
  /** `open` (may still change) or `closed` (frozen: never changes again) */
  status: 'open' | 'closed';
  /** RFC 3339, when the month was closed; null while open */
  closed_at: string | null;
  lines: InvoiceLine[];
  /** Σ line amounts: credits (6 decimals), µc, and in the catalog's currency (exact decimal) */
  total: { credits: string; micro_credits: string; currency: string; amount: string };
}

/** An account's statement for one month: closing = opening + top_ups + grants − usage + refunds + adjustments. */
export interface Statement {
  account_id: string;
  month: string;
  status: 'open' | 'closed';
  closed_at: string | null;
  /** every amount in credits, exact decimal text with 6 decimals */
  opening_balance: string;
  top_ups: string;
  grants: string;
  /** what usage cost this month (late usage of closed months included, as on the invoice) */
  usage: string;
  refunds: string;
  /** signed */
  adjustments: string;
  closing_balance: string;
  /** the catalog's currency (ISO 4217) and what a credit is worth in it */
  currency: string;
  credit_value: string;
}
