// Billing from the warehouse: invoices, statements, month close, late facts and the customer's
// credit history (issue 9). Every amount is bigint µc; nothing passes through a float.
//
// Model (README "Billing: invoices, statements, month close"):
// - A month's FACTS are the usage events with cost > 0 and the ledger entries dated in it (UTC),
//   leaving out what the ledger quarantined (money reads agree with the ledger). Facts become
//   keyed ITEMS: one per usage line (serving model × dimension × unit price × credit value), one
//   `rounding` item (Σ charges of itemised requests − Σ their line amounts), one `unitemized`
//   item (requests whose lines do not add up to their charge, whole), one per ledger entry.
// - Every input a rendered document reads (account name, seller, currency, credit values) is in
//   the document itself, so a closed month's files are a pure function of its snapshot.
// - Closed months form a prefix: closing M closes every open month up to M. A closed month's
//   items, invoice and statement are frozen as snapshot rows (migration 8) and read from there.
// - A fact dated in a closed month that arrives later shows in the first open month (L + 1,
//   L the last closed month) as the difference (items the month holds now) − (items of it that
//   closed snapshots booked already), item by item, so redelivered duplicates change nothing
//   and a delta is booked exactly once: when L + 1 closes its snapshot absorbs it.

import { randomUUID } from 'node:crypto';
import { DIMENSIONS, PriceBook, parseCatalog, parseExactDecimal, resolveServing } from '@tollgate/pricing';
import type { Catalog, PriceVersion } from '@tollgate/pricing';
import { LEDGER_REFUSED_IDS, type Warehouse } from './warehouse.ts';
import { stringTable } from './sql-values.ts';

// ---- shapes: what billing produces and the renderers (services/control billing-render.ts) take.
// Money is always exact decimal text: µc as integer text, credits and currency as fixed-point text.

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
   * `unitemized`: requests whose charge is not ⌈Σ their exact lines⌉, so lines would misstate
   * them (charged their hold: `cost_over_bound`; iterations priced at other models; version 1
   * events without unit prices): `quantity` = requests, `amount` = Σ their charges, whole;
   * `rounding`: Σ charges of the itemised requests − Σ their usage line amounts: each request is
   * rounded up once to a whole µc and each line is truncated to whole µc, so
   * 0 ≤ rounding < requests + usage lines (µc); `quantity` = the itemised requests;
   * `refund`, `adjustment`: ledger entries of those kinds (credits back to the account are negative
   * amounts), `quantity` = entries (1; −1 for an entry reversed by a later quarantine).
   * A late line's quantity counts the late requests or entries alone.
   */
  section: 'usage' | 'late_usage' | 'unitemized' | 'rounding' | 'refund' | 'adjustment';
  /**
   * the month the line's facts are dated in: `month`, except for late facts of a closed month
   * (`late_usage`, and the `rounding`, `refund` and `adjustment` lines of such facts)
   */
  source_month: string;
  /** catalog model id of the model that served (the one the unit price came from; '' for non-usage lines) */
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

/** What the lines priced at one credit value total (a month may see the credit value change). */
export interface CreditValueTotal {
  /** `1 CNY = 10 credits` (credits_per_unit) or `1 credit = 0.005 USD` (unit_per_credit) */
  credit_value: string;
  /** ISO 4217 */
  currency: string;
  /** Σ of these lines, µc as integer text */
  micro_credits: string;
  /** the same in `currency`, exact decimal text */
  amount: string;
}

/** What an invoice and a statement both open with: whose, by whom, which month, and whether it is frozen. */
export interface MonthDocumentHead {
  account_id: string;
  /** the account's name when the document was built (frozen with a closed month) */
  account_name: string;
  /** who issues the invoice or statement */
  seller: string;
  month: string;
  /** `open` (may still change) or `closed` (frozen: never changes again) */
  status: 'open' | 'closed';
  /** RFC 3339, when the month was closed; null while open */
  closed_at: string | null;
}

/** An account's invoice for one month. */
export interface Invoice extends MonthDocumentHead {
  lines: InvoiceLine[];
  /**
   * Σ line amounts: credits (6 decimals) and µc; `credit_values`: per credit value applied (usage
   * at its price version's, a ledger entry at the version in force at its instant) the µc and the
   * currency amount; `currency`/`amount`: their sum when they share one currency (with none, the
   * currency in force and 0), '' and '' when the month spans currencies.
   */
  total: { credits: string; micro_credits: string; currency: string; amount: string; credit_values: CreditValueTotal[] };
}

/** An account's statement for one month: closing = opening + top_ups + grants − usage + refunds + adjustments. */
export interface Statement extends MonthDocumentHead {
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
  /**
   * the currency (ISO 4217) and what a credit was worth in it for this month's facts: every value
   * applied, `; `-joined in order (e.g. `1 CNY = 10 credits; 1 CNY = 20 credits` after a change);
   * with no facts, the value in force
   */
  currency: string;
  credit_value: string;
}

/** A bad month or parameter given to a billing function (the routes answer 400 naming it). */
export class BillingInputError extends Error {
  override readonly name = 'BillingInputError';
}

/**
 * Where the documents' credit values come from (`ReportDeps.prices`, a PriceBook at runtime):
 * usage converts at its event's `price_version`, a ledger entry at the version in force at its
 * instant; versions are looked up in the warehouse's `price_versions` first, then here
 * (`byId`, `at`), then `current()`.
 */
export interface BillingPrices {
  current(): PriceVersion;
  byId?(id: string): PriceVersion | undefined;
  at?(ts: number): PriceVersion | undefined;
}

/** The seller named on every document. */
export const SELLER = 'Tollgate';

/** One month close as listed. */
export interface MonthClose {
  month: string;
  close_id: string;
  /** RFC 3339 */
  closed_at: string;
}

// ---- months ----

const MONTH_RE = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** `YYYY-MM` → [start, end) epoch ms (UTC). Throws BillingInputError naming the value. */
export function monthRange(month: string): { start: number; end: number } {
  const m = MONTH_RE.exec(month);
  if (m === null) throw new BillingInputError(`month: ${JSON.stringify(month.slice(0, 40))} is not a month; expected YYYY-MM such as 2026-11`);
  const y = Number(m[1]);
  const mo = Number(m[2]);
  return { start: Date.UTC(y, mo - 1, 1), end: Date.UTC(y, mo, 1) };
}

/** The month (`YYYY-MM`, UTC) an instant (epoch ms) falls in. */
export function monthOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 7);
}

/** The month after `month`. */
export function nextMonth(month: string): string {
  return monthOf(monthRange(month).end);
}

/**
 * A month a billing route may name: `YYYY-MM`, from 1970-01 up to the month after the one
 * `now` is in (that month may already hold late usage of a closed current month). Anything
 * else throws BillingInputError naming the value.
 */
export function parseBillingMonth(month: string, now: number = Date.now()): string {
  const { start } = monthRange(month);
  if (start < 0) throw new BillingInputError(`month: ${month} is before 1970-01`);
  const latest = nextMonth(monthOf(now));
  if (month > latest) throw new BillingInputError(`month: ${month} is in the future (the latest month with anything to bill is ${latest})`);
  return month;
}

/**
 * A month that may be closed: a billing month (parseBillingMonth) that has started, i.e. not
 * after the month `now` is in (UTC). Closing a month that has not started would leave later
 * charges in a month every route refuses. Throws BillingInputError naming `month`.
 */
export function parseClosableMonth(month: string, now: number = Date.now()): string {
  parseBillingMonth(month, now);
  const current = monthOf(now);
  if (month > current) throw new BillingInputError(`month: ${month} has not started yet; the latest month that can be closed is ${current} (UTC)`);
  return month;
}

// ---- exact decimals ----

const MICROS = 1_000_000n;

/** µc → credits with exactly 6 decimals: "12.345678", "-0.500000", "0.000000". */
export function credits6(micros: bigint): string {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  return `${neg ? '-' : ''}${abs / MICROS}.${(abs % MICROS).toString().padStart(6, '0')}`;
}

/** num/den (den > 0) as exact decimal text; a value that does not terminate within 18 places is rounded half-up there. */
function decimalText(num: bigint, den: bigint): string {
  const neg = num < 0n;
  let n = neg ? -num : num;
  let scale = 0;
  let pow = 1n;
  while ((n * pow) % den !== 0n && scale < 18) {
    pow *= 10n;
    scale++;
  }
  n = (2n * n * pow + den) / (2n * den);
  const digits = n.toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return `${neg && n !== 0n ? '-' : ''}${text}`;
}

/** Compares exact decimal texts by value. */
function cmpDecimal(a: string, b: string): number {
  const x = parseExactDecimal(a);
  const y = parseExactDecimal(b);
  const s = Math.max(x.scale, y.scale);
  const l = x.units * 10n ** BigInt(s - x.scale);
  const r = y.units * 10n ** BigInt(s - y.scale);
  return l < r ? -1 : l > r ? 1 : 0;
}

// ---- credit values ----

/** A credit value as an item carries it: `CUR:kind:value` (`CNY:credits_per_unit:10`). */
function creditKey(version: PriceVersion): string {
  const c = version.catalog.credit;
  return `${c.currency}:${c.rate.kind}:${c.rate.value}`;
}

function parseCreditKey(key: string): { currency: string; kind: string; value: string } {
  const [currency = '', kind = '', value = ''] = key.split(':');
  return { currency, kind, value };
}

/** `1 CNY = 10 credits` or `1 credit = 0.005 USD`. */
function creditText(key: string): string {
  const c = parseCreditKey(key);
  return c.kind === 'credits_per_unit' ? `1 ${c.currency} = ${c.value} credits` : `1 credit = ${c.value} ${c.currency}`;
}

/** µc → the credit value's currency as an exact fraction [num, den] (den > 0). */
function currencyFraction(micros: bigint, key: string): [bigint, bigint] {
  const c = parseCreditKey(key);
  const rate = parseExactDecimal(c.value);
  const p = 10n ** BigInt(rate.scale);
  // credits_per_unit r: amount = µc / (10^6 · r); unit_per_credit r: amount = µc · r / 10^6
  return c.kind === 'credits_per_unit' ? [micros * p, MICROS * rate.units] : [micros * rate.units, MICROS * p];
}

/** How items find the version they were priced with (see BillingPrices). */
interface Pricing {
  /** a usage event's version: by id, else the one in force at `ts` */
  version(id: string, ts: number): PriceVersion;
  /** the version in force at `ts` (epoch ms) */
  at(ts: number): PriceVersion;
}

async function pricingOf(w: Warehouse, prices: BillingPrices): Promise<Pricing> {
  const stored = new PriceBook();
  for (const row of await w.priceVersions()) {
    let catalog: Catalog;
    try {
      catalog = parseCatalog(row.catalog, `price version ${row.id}`);
    } catch {
      continue; // a version that no longer validates cannot convert anything; the next source answers
    }
    stored.append(catalog, row.effectiveAt, { force: true });
  }
  const at = (ts: number) => stored.at(ts) ?? prices.at?.(ts) ?? prices.current();
  return { at, version: (id, ts) => stored.byId(id) ?? prices.byId?.(id) ?? at(ts) };
}

/** The item key's credit value (every key ends `|cv=<credit key>`). */
function creditOfKey(key: string): string {
  const i = key.lastIndexOf('|cv=');
  return i < 0 ? '' : key.slice(i + 4);
}

// ---- items ----

type ItemSection = 'usage' | 'unitemized' | 'rounding' | 'grant' | 'top_up' | 'refund' | 'adjustment';
const LEDGER_SECTIONS: ReadonlySet<string> = new Set(['grant', 'top_up', 'refund', 'adjustment']);

/**
 * One keyed thing a month books for an account. `amount` is what the item does to the amount
 * owed, µc: usage and rounding positive (a debit of the balance); ledger items carry the
 * ledger's signed amount (a credit of the balance: positive = to the account).
 */
interface Item {
  source: string;
  key: string;
  section: ItemSection;
  model: string;
  dimension: string;
  /** µc per MTok (token dimensions) or per unit, exact decimal text; '' for other items */
  unitPrice: string;
  quantity: bigint;
  amount: bigint;
  /** the credit value it converts at (creditKey); also the key's `|cv=` suffix */
  credit: string;
}

/** The balance move of an item, µc (credit positive). */
function net(i: Item): bigint {
  return LEDGER_SECTIONS.has(i.section) ? i.amount : -i.amount;
}

const DIM_INDEX = new Map(DIMENSIONS.map((d, i) => [d.key as string, i]));
const DIM_PER = new Map(DIMENSIONS.map((d) => [d.key as string, d.kind === 'token' ? MICROS : 1n]));

/** Money reads leave out what the ledger refused (see NOT_REFUSED in warehouse.ts). */
const notRefused = (w: Warehouse) => `event_id NOT IN (${LEDGER_REFUSED_IDS(w.tables.quarantine)})`;

function s(v: unknown): string {
  if (typeof v !== 'string') throw new Error(`billing: expected a string, got ${typeof v}`);
  return v;
}

interface FactScope {
  /** epoch ms, inclusive (absent: from the start) */
  from?: number;
  /** epoch ms, exclusive */
  to: number;
  accountId?: string;
  /** only these accounts and these months (`YYYYMM`): the candidates of lateDeltas */
  accountIds?: readonly string[];
  months?: readonly number[];
}

/** account → source month → items: every fact dated in [from, to) as keyed items. */
type Facts = Map<string, Map<string, Item[]>>;

function push(f: Facts, account: string, source: string, item: Item): void {
  let byMonth = f.get(account);
  if (byMonth === undefined) f.set(account, (byMonth = new Map()));
  let items = byMonth.get(source);
  if (items === undefined) byMonth.set(source, (items = []));
  items.push(item);
}

function scopeSql(scope: FactScope): { where: string; params: Record<string, unknown> } {
  const conds = ["ts < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')"];
  const params: Record<string, unknown> = { to_ms: scope.to };
  if (scope.from !== undefined) {
    conds.push("ts >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')");
    params['from_ms'] = scope.from;
  }
  if (scope.accountId !== undefined) {
    conds.push('account_id = {account_id:String}');
    params['account_id'] = scope.accountId;
  }
  if (scope.accountIds !== undefined) {
    conds.push(`account_id IN ${stringTable(scope.accountIds)}`);
  }
  if (scope.months !== undefined) {
    conds.push("toYYYYMM(ts, 'UTC') IN {months:Array(UInt32)}");
    params['months'] = scope.months;
  }
  return { where: conds.join(' AND '), params };
}

/**
 * The catalog id a request was priced at: its serving model's (resolveServing), else its own.
 * `served` is '' where the serving model is the name the request was sent upstream as (its
 * `upstream_model`, a group's mapping included): the requested model's own, as pricing reads it.
 */
function servingModel(catalog: Catalog, model: string, served: string): string {
  const own = catalog.models.find((x) => x.id === model);
  if (served === '' || own === undefined) return model;
  return resolveServing(catalog, served, own).model.id;
}

/**
 * Σ over dimensions of quantity × unit price in µc·10⁻⁶ (exact, Decimal256 with 18 places, up to
 * ~10^58): a request's exact cost × 10⁶. Decimal128 (≤ ~1.7·10^20 at 18 places) wrapped silently
 * from ~1.7·10^14 µc per request (a tester's case), and the itemization check then judged an
 * exact request unitemized or the reverse. A unit price past Decimal256's range reads 0: that
 * request is unitemized, charged whole.
 */
const EXACT_E6 = DIMENSIONS.map((d) =>
  `toDecimal256OrZero(unit_prices['${d.key}'], 18) * toInt64(${d.column})${d.kind === 'token' ? '' : ' * 1000000'}`).join(' + ');

/**
 * The facts of `scope` as items. Usage: events with cost > 0 grouped by account, month, credit
 * value (of the event's price version), serving model and unit prices. An event is ITEMISED when
 * its charge is ⌈Σ quantity × unit price⌉ (checked exactly, per event) and no iteration was
 * priced at another model: its quantities go into usage lines under the serving model (one per
 * dimension × unit price; amount = quantity × price truncated to the µc) and its charge into the
 * `rounding` item (Σ charges − Σ line amounts, quantity = requests). Any other event (charged its
 * hold, iterations at another model, a version 1 event without unit prices, a price case the
 * stored unit prices do not describe) goes whole into the `unitemized` item (quantity =
 * requests, amount = Σ charges). Ledger entries: one item each, at the credit value in force at
 * their instant.
 */
async function loadFacts(w: Warehouse, scope: FactScope, pricing: Pricing): Promise<Facts> {
  const { where, params } = scopeSql(scope);
  const out: Facts = new Map();
  const usage = await w.select(
    `SELECT account_id, src, m, served, up_key, any(up) AS up, pv, iter_models, unitemized, count() AS n,
            ${DIMENSIONS.map((d) => `toString(sum(toInt64(q_${d.key}))) AS q_${d.key}`).join(', ')},
            toString(sum(toInt128(cost_micros))) AS cost_text, toUnixTimestamp64Milli(min(ts)) AS min_ms
     FROM (
       SELECT account_id, ts, formatDateTime(ts, '%Y-%m', 'UTC') AS src, catalog_model AS m, if(ifNull(served_model, '') = upstream_model, '', ifNull(served_model, '')) AS served,
              toString(unit_prices) AS up_key, unit_prices AS up, toString(price_version) AS pv,
              arraySort(arrayDistinct(arrayMap(x -> JSONExtractString(x, 'catalog_model'), JSONExtractArrayRaw(iterations)))) AS iter_models,
              ${DIMENSIONS.map((d) => `${d.column} AS q_${d.key}`).join(', ')},
              cost_micros,
              NOT (${EXACT_E6} > toDecimal256(cost_micros - 1, 18) * 1000000 AND ${EXACT_E6} <= toDecimal256(cost_micros, 18) * 1000000) AS unitemized
       FROM ${w.tables.usage} FINAL
       WHERE ${where} AND cost_micros > 0 AND ${notRefused(w)}
     )
     GROUP BY account_id, src, m, served, up_key, pv, iter_models, unitemized
     ORDER BY account_id, src, m, served, up_key, pv, iter_models, unitemized`,
    params,
  );
  // account|src|credit → lines, Σ charges and requests of itemised events, and the unitemized ones
  interface Group { account: string; src: string; credit: string; cost: bigint; requests: bigint; xCost: bigint; xRequests: bigint; items: Map<string, Item> }
  const groups = new Map<string, Group>();
  for (const r of usage) {
    const account = s(r['account_id']);
    const src = s(r['src']);
    const version = pricing.version(s(r['pv']), Number(r['min_ms']));
    const credit = creditKey(version);
    const k = `${account}\u0000${src}\u0000${credit}`;
    let g = groups.get(k);
    if (g === undefined) groups.set(k, (g = { account, src, credit, cost: 0n, requests: 0n, xCost: 0n, xRequests: 0n, items: new Map() }));
    const cost = BigInt(s(r['cost_text']));
    const n = BigInt(String(r['n']));
    const model = servingModel(version.catalog, s(r['m']), s(r['served']));
    const iterModels = (r['iter_models'] ?? []) as unknown[];
    const whole = r['unitemized'] === true || r['unitemized'] === 1 || r['unitemized'] === '1' || iterModels.some((x) => x !== model);
    if (whole) {
      g.xCost += cost;
      g.xRequests += n;
      continue;
    }
    g.cost += cost;
    g.requests += n;
    const prices = (r['up'] ?? {}) as Record<string, unknown>;
    for (const d of DIMENSIONS) {
      const qty = BigInt(s(r[`q_${d.key}`]));
      const price = prices[d.key];
      if (qty === 0n || typeof price !== 'string') continue;
      const key = `u|${model}|${d.key}|${price}|cv=${credit}`;
      const it = g.items.get(key);
      if (it === undefined) {
        g.items.set(key, { source: src, key, section: 'usage', model, dimension: d.key, unitPrice: price, quantity: qty, amount: 0n, credit });
      } else it.quantity += qty;
    }
  }
  for (const g of groups.values()) {
    let sum = 0n;
    for (const it of g.items.values()) {
      it.amount = lineAmount(it.quantity, it.unitPrice, it.dimension);
      sum += it.amount;
      push(out, g.account, g.src, it);
    }
    if (g.requests > 0n) {
      push(out, g.account, g.src, { source: g.src, key: `r|cv=${g.credit}`, section: 'rounding', model: '', dimension: '', unitPrice: '', quantity: g.requests, amount: g.cost - sum, credit: g.credit });
    }
    if (g.xRequests > 0n) {
      push(out, g.account, g.src, { source: g.src, key: `x|cv=${g.credit}`, section: 'unitemized', model: '', dimension: '', unitPrice: '', quantity: g.xRequests, amount: g.xCost, credit: g.credit });
    }
  }
  const ledger = await w.select(
    `SELECT account_id, formatDateTime(ts, '%Y-%m', 'UTC') AS src, event_id, kind, toString(amount_micros) AS amount_text,
            toUnixTimestamp64Milli(ts) AS ms
     FROM ${w.tables.ledger} FINAL
     WHERE ${where} AND ${notRefused(w)}
     ORDER BY account_id, ts, event_id`,
    params,
  );
  for (const r of ledger) {
    const kind = s(r['kind']);
    if (!LEDGER_SECTIONS.has(kind)) continue;
    const src = s(r['src']);
    const credit = creditKey(pricing.at(Number(r['ms'])));
    push(out, s(r['account_id']), src, {
      source: src, key: `l|${s(r['event_id'])}|cv=${credit}`, section: kind as ItemSection, model: '', dimension: '', unitPrice: '',
      quantity: 1n, amount: BigInt(s(r['amount_text'])), credit,
    });
  }
  return out;
}

/**
 * quantity × unit price (µc per MTok for tokens, per unit otherwise), exact, rounded down to the
 * µc (towards −∞): a line never states more than its exact amount, so the rounding line is never
 * negative. A late reversal (a negative quantity: an event of a closed month quarantined since)
 * is rounded down too: −1 × 19.2 is −20, never −19, which would take back less than was booked.
 */
function lineAmount(quantity: bigint, unitPrice: string, dimension: string): bigint {
  const p = parseExactDecimal(unitPrice);
  const per = DIM_PER.get(dimension) ?? 1n;
  const num = quantity * p.units;
  const den = per * 10n ** BigInt(p.scale);
  return num >= 0n ? num / den : -((-num + den - 1n) / den);
}

// ---- closes and snapshots ----

/** The winning close of each closed month (earliest closed_at, then close id), oldest first. */
export async function listCloses(w: Warehouse): Promise<MonthClose[]> {
  const rows = await w.select(
    `SELECT month, argMin(close_id, (closed_at, close_id)) AS cid, toUnixTimestamp64Milli(min(closed_at)) AS at_ms
     FROM ${w.tables.billingCloses} FINAL GROUP BY month ORDER BY month`,
  );
  return rows.map((r) => ({ month: s(r['month']), close_id: s(r['cid']), closed_at: new Date(Number(r['at_ms'])).toISOString() }));
}

const WINNERS = (w: Warehouse) =>
  `(month, close_id) IN (SELECT month, argMin(close_id, (closed_at, close_id)) FROM ${w.tables.billingCloses} FINAL GROUP BY month)`;

/** account → source month → key → item: what closed snapshots booked (own facts and absorbed deltas). */
async function loadAccounted(w: Warehouse, accountId?: string, accountIds?: readonly string[]): Promise<Map<string, Map<string, Map<string, Item>>>> {
  const rows = await w.select(
    `SELECT account_id, source_month, line_key, section, model, dimension, unit_price,
            toString(sum(toInt128(quantity))) AS q_text, toString(sum(toInt128(amount_micros))) AS a_text
     FROM ${w.tables.billingBooked} FINAL
     WHERE ${WINNERS(w)}${accountId === undefined ? '' : ' AND account_id = {account_id:String}'}${accountIds === undefined ? '' : ` AND account_id IN ${stringTable(accountIds)}`}
     GROUP BY account_id, source_month, line_key, section, model, dimension, unit_price`,
    accountId === undefined ? {} : { account_id: accountId },
  );
  const out = new Map<string, Map<string, Map<string, Item>>>();
  for (const r of rows) {
    const account = s(r['account_id']);
    const src = s(r['source_month']);
    let a = out.get(account);
    if (a === undefined) out.set(account, (a = new Map()));
    let m = a.get(src);
    if (m === undefined) a.set(src, (m = new Map()));
    m.set(s(r['line_key']), {
      source: src, key: s(r['line_key']), section: s(r['section']) as ItemSection, model: s(r['model']), dimension: s(r['dimension']),
      unitPrice: s(r['unit_price']), quantity: BigInt(s(r['q_text'])), amount: BigInt(s(r['a_text'])), credit: creditOfKey(s(r['line_key'])),
    });
  }
  return out;
}

/**
 * How long before a close's `facts_as_of` a fact may have been stamped (`inserted_at`, taken when
 * its INSERT starts) and still not be visible to the close's read (its INSERT committed later):
 * such facts count as late too. Generous on purpose: it only widens the candidates.
 */
const INSERT_SLACK_MS = 15 * 60_000;

/**
 * The (account, month) pairs of closed months that can hold a fact the month's close did not
 * see: a usage event or ledger entry stamped (server clock, `inserted_at`) after the close's
 * `facts_as_of` minus INSERT_SLACK_MS, one dated before the first closed month, or one the ledger
 * quarantined (server clock, `ts`) after the first close's `facts_as_of`. Any other pair holds exactly what its close booked, so its late delta is zero. Reads
 * `inserted_at` of closed months only, no FINAL (a duplicate is a candidate like the original).
 */
async function lateCandidates(w: Warehouse, last: string, accountId?: string): Promise<Map<string, Set<string>>> {
  const asOf = await w.select(
    `SELECT month, toUnixTimestamp64Milli(argMin(facts_as_of, (closed_at, close_id))) AS ms
     FROM ${w.tables.billingCloses} FINAL WHERE month <= {last:String} GROUP BY month ORDER BY month`,
    { last },
  );
  const params: Record<string, unknown> = {};
  const byMonth: string[] = [];
  asOf.forEach((r, i) => {
    const { start, end } = monthRange(s(r['month']));
    params[`s${i}`] = start;
    params[`e${i}`] = end;
    params[`a${i}`] = Number(r['ms']) - INSERT_SLACK_MS;
    byMonth.push(`(ts >= fromUnixTimestamp64Milli({s${i}:Int64}, 'UTC') AND ts < fromUnixTimestamp64Milli({e${i}:Int64}, 'UTC')
      AND inserted_at > fromUnixTimestamp64Milli({a${i}:Int64}, 'UTC'))`);
  });
  if (byMonth.length === 0) return new Map();
  // Closes are a prefix from the first month with a fact: a fact dated before it came later.
  params['before'] = monthRange(s(asOf[0]!['month'])).start;
  byMonth.push("ts < fromUnixTimestamp64Milli({before:Int64}, 'UTC')");
  params['first_as_of'] = Math.min(...asOf.map((r) => Number(r['ms']))) - INSERT_SLACK_MS;
  params['to_ms'] = monthRange(last).end;
  const acct = accountId === undefined ? '' : ' AND account_id = {account_id:String}';
  if (accountId !== undefined) params['account_id'] = accountId;
  const late = `(${byMonth.join(' OR ')})${acct}`;
  const quarantined = `ts < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')${acct} AND event_id IN (
    ${LEDGER_REFUSED_IDS(w.tables.quarantine)} AND ts > fromUnixTimestamp64Milli({first_as_of:Int64}, 'UTC'))`;
  const rows = await w.select(
    `SELECT DISTINCT account_id, formatDateTime(ts, '%Y-%m', 'UTC') AS src FROM (
       SELECT account_id, ts FROM ${w.tables.usage} WHERE ${late}
       UNION ALL SELECT account_id, ts FROM ${w.tables.ledger} WHERE ${late}
       UNION ALL SELECT account_id, ts FROM ${w.tables.usage} WHERE ${quarantined}
       UNION ALL SELECT account_id, ts FROM ${w.tables.ledger} WHERE ${quarantined}
     ) ORDER BY account_id, src`,
    params,
  );
  const out = new Map<string, Set<string>>();
  for (const r of rows) {
    const a = s(r['account_id']);
    let m = out.get(a);
    if (m === undefined) out.set(a, (m = new Set()));
    m.add(s(r['src']));
  }
  return out;
}

/**
 * account → late items: for every closed month (≤ `last`), what it holds now minus what closed
 * snapshots booked of it, item by item; only items that differ. Only the pairs lateCandidates
 * finds are read and compared (exactly); every other pair's delta is zero by construction.
 */
async function lateDeltas(w: Warehouse, last: string, pricing: Pricing, accountId?: string): Promise<Map<string, Item[]>> {
  const out = new Map<string, Item[]>();
  const candidates = await lateCandidates(w, last, accountId);
  if (candidates.size === 0) return out;
  const accountIds = [...candidates.keys()];
  const months = [...new Set([...candidates.values()].flatMap((m) => [...m]))].map((m) => Number(m.replace('-', '')));
  const live = await loadFacts(w, { to: monthRange(last).end, accountIds, months }, pricing);
  const booked = await loadAccounted(w, accountId, accountIds);
  for (const account of accountIds) {
    const items: Item[] = [];
    const lm = live.get(account) ?? new Map<string, Item[]>();
    const bm = booked.get(account) ?? new Map<string, Map<string, Item>>();
    for (const src of candidates.get(account)!) {
      const was = new Map(bm.get(src) ?? []);
      const deltas: Item[] = [];
      for (const it of lm.get(src) ?? []) {
        const b = was.get(it.key);
        was.delete(it.key);
        deltas.push({ ...it, quantity: it.quantity - (b?.quantity ?? 0n), amount: it.amount - (b?.amount ?? 0n) });
      }
      // booked once, gone now (e.g. quarantined later): the reverse
      for (const b of was.values()) deltas.push({ ...b, quantity: -b.quantity, amount: -b.amount });
      for (const d of restateLateUsage(deltas)) if (d.quantity !== 0n || d.amount !== 0n) items.push(d);
    }
    if (items.length > 0) out.set(account, items);
  }
  return out;
}

/**
 * The late usage of one source month as invoice lines: each usage line states its own late
 * quantity × unit price, truncated (`lineAmount`), as every usage line does, not the difference
 * of two truncated totals (which can state more than its exact amount: 5 × 19.2 = 96 less the
 * booked 4 × 19.2 = 76.8 → 76 is 20 for one token of 19.2); the rounding line of its credit
 * value takes what the late charges hold beyond those lines, so usage and rounding together
 * still move exactly what the charges moved. `deltas`: live − booked items of the month.
 */
function restateLateUsage(deltas: Item[]): Item[] {
  // Σ (usage + rounding) moved per credit value: the late charges
  const charged = new Map<string, bigint>();
  for (const d of deltas) {
    if (d.section === 'usage' || d.section === 'rounding') charged.set(d.credit, (charged.get(d.credit) ?? 0n) + d.amount);
  }
  const out: Item[] = [];
  const rounding = new Map<string, Item>();
  for (const d of deltas) {
    if (d.section === 'usage') {
      const amount = lineAmount(d.quantity, d.unitPrice, d.dimension);
      charged.set(d.credit, charged.get(d.credit)! - amount);
      out.push({ ...d, amount });
    } else if (d.section === 'rounding') {
      rounding.set(d.credit, d);
      out.push(d);
    } else out.push(d);
  }
  for (const [credit, rest] of charged) {
    const r = rounding.get(credit);
    if (r !== undefined) r.amount = rest;
    else if (rest !== 0n) out.push({ source: out[0]!.source, key: `r|cv=${credit}`, section: 'rounding', model: '', dimension: '', unitPrice: '', quantity: 0n, amount: rest, credit });
  }
  return out;
}

/** Σ balance moves (credit positive) of every fact dated in [from, to), per account, µc. */
async function netMoves(w: Warehouse, scope: FactScope): Promise<Map<string, bigint>> {
  const { where, params } = scopeSql(scope);
  const rows = await w.select(
    `SELECT account_id, toString(sum(amount)) AS t FROM (
       SELECT account_id, sum(toInt128(amount_micros)) AS amount FROM ${w.tables.ledger} FINAL
       WHERE ${where} AND kind IN ('grant', 'top_up', 'refund', 'adjustment') AND ${notRefused(w)} GROUP BY account_id
       UNION ALL
       SELECT account_id, -sum(toInt128(cost_micros)) AS amount FROM ${w.tables.usage} FINAL
       WHERE ${where} AND ${notRefused(w)} GROUP BY account_id
     ) GROUP BY account_id ORDER BY account_id`,
    params,
  );
  return new Map(rows.map((r) => [s(r['account_id']), BigInt(s(r['t']))]));
}

// ---- documents ----

const SECTION_ORDER: Record<InvoiceLine['section'], number> = { usage: 0, late_usage: 1, unitemized: 2, rounding: 3, refund: 4, adjustment: 5 };

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function creditsPrice(microsPrice: string): string {
  const p = parseExactDecimal(microsPrice);
  return decimalText(p.units, MICROS * 10n ** BigInt(p.scale));
}

/** Invoice lines of booked items (grants and top-ups are payments, not invoice lines), in their fixed order. */
function invoiceLines(account: string, month: string, items: readonly Item[]): InvoiceLine[] {
  const lines: Array<{ line: InvoiceLine; price: string; key: string }> = [];
  for (const it of items) {
    if (it.section === 'grant' || it.section === 'top_up') continue;
    const late = it.source !== month;
    const section: InvoiceLine['section'] = it.section === 'usage' ? (late ? 'late_usage' : 'usage') : it.section;
    // on the invoice, money back to the account is a negative amount
    const amount = LEDGER_SECTIONS.has(it.section) ? -it.amount : it.amount;
    const usage = it.section === 'usage';
    lines.push({
      price: it.unitPrice, key: it.key,
      line: {
        account_id: account, month, section, source_month: it.source, model: it.model, dimension: it.dimension,
        quantity: it.quantity.toString(),
        // µc per MTok (or per unit) → credits per MTok (or per unit)
        unit_price: usage ? creditsPrice(it.unitPrice) : '',
        amount: credits6(amount), amount_micros: amount.toString(),
      },
    });
  }
  lines.sort((a, b) =>
    SECTION_ORDER[a.line.section] - SECTION_ORDER[b.line.section]
    || cmpStr(a.line.source_month, b.line.source_month)
    || cmpStr(a.line.model, b.line.model)
    || (DIM_INDEX.get(a.line.dimension) ?? -1) - (DIM_INDEX.get(b.line.dimension) ?? -1)
    || (a.price === '' || b.price === '' ? 0 : cmpDecimal(a.price, b.price))
    || cmpStr(a.key, b.key));
  return lines.map((l) => l.line);
}

/** The invoice amount of an item (money back to the account negative), or null for payments (grants, top-ups). */
function invoiceAmount(it: Item): bigint | null {
  if (it.section === 'grant' || it.section === 'top_up') return null;
  return LEDGER_SECTIONS.has(it.section) ? -it.amount : it.amount;
}

/** The documents' inputs beyond the items: names, seller and the credit value in force. */
interface DocContext {
  names: ReadonlyMap<string, string>;
  /** the credit value of a document without facts (creditKey) */
  inForce: string;
}

function buildInvoice(account: string, month: string, items: readonly Item[], close: MonthClose | null, ctx: DocContext): Invoice {
  const lines = invoiceLines(account, month, items);
  const total = lines.reduce((t, l) => t + BigInt(l.amount_micros), 0n);
  const byCredit = new Map<string, bigint>();
  for (const it of items) {
    const a = invoiceAmount(it);
    if (a !== null) byCredit.set(it.credit, (byCredit.get(it.credit) ?? 0n) + a);
  }
  const credit_values = [...byCredit.keys()].sort(cmpStr).map((k) => {
    const [num, den] = currencyFraction(byCredit.get(k)!, k);
    return { credit_value: creditText(k), currency: parseCreditKey(k).currency, micro_credits: byCredit.get(k)!.toString(), amount: decimalText(num, den) };
  });
  // one currency: the exact sum of the fractions; none: the value in force, 0
  const currencies = new Set(byCredit.size === 0 ? [parseCreditKey(ctx.inForce).currency] : [...byCredit.keys()].map((k) => parseCreditKey(k).currency));
  let currency = '';
  let amount = '';
  if (currencies.size === 1) {
    let num = 0n;
    let den = 1n;
    for (const [k, micros] of byCredit) {
      const [n, d] = currencyFraction(micros, k);
      num = num * d + n * den;
      den *= d;
    }
    currency = [...currencies][0]!;
    amount = decimalText(num, den);
  }
  return {
    account_id: account, account_name: ctx.names.get(account) ?? '', seller: SELLER,
    month, status: close === null ? 'open' : 'closed', closed_at: close?.closed_at ?? null, lines,
    total: { credits: credits6(total), micro_credits: total.toString(), currency, amount, credit_values },
  };
}

function buildStatement(account: string, month: string, opening: bigint, items: readonly Item[], close: MonthClose | null, ctx: DocContext): Statement {
  const by = { top_up: 0n, grant: 0n, usage: 0n, refund: 0n, adjustment: 0n };
  for (const it of items) {
    if (it.section === 'rounding' || it.section === 'usage' || it.section === 'unitemized') by.usage += it.amount;
    else by[it.section] += it.amount;
  }
  const closing = opening + by.top_up + by.grant - by.usage + by.refund + by.adjustment;
  const credits = [...new Set(items.length === 0 ? [ctx.inForce] : items.map((i) => i.credit))].sort(cmpStr);
  return {
    account_id: account, account_name: ctx.names.get(account) ?? '', seller: SELLER,
    month, status: close === null ? 'open' : 'closed', closed_at: close?.closed_at ?? null,
    opening_balance: credits6(opening), top_ups: credits6(by.top_up), grants: credits6(by.grant), usage: credits6(by.usage),
    refunds: credits6(by.refund), adjustments: credits6(by.adjustment), closing_balance: credits6(closing),
    currency: [...new Set(credits.map((k) => parseCreditKey(k).currency))].join(', '),
    credit_value: credits.map(creditText).join('; '),
  };
}

/** Account id → name, from the warehouse's accounts ('' when unknown). */
async function accountNames(w: Warehouse, accountId?: string): Promise<Map<string, string>> {
  const rows = await w.select(
    `SELECT id, name FROM ${w.tables.accounts} FINAL${accountId === undefined ? '' : ' WHERE id = {account_id:String}'}`,
    accountId === undefined ? {} : { account_id: accountId },
  );
  return new Map(rows.map((r) => [s(r['id']), s(r['name'])]));
}

/** What documents of `month` read besides their items (names now, the credit value in force at the month's end or now). */
async function docContext(w: Warehouse, month: string, pricing: Pricing, accountId?: string): Promise<DocContext> {
  const at = Math.min(monthRange(month).end - 1, Date.now());
  return { names: await accountNames(w, accountId), inForce: creditKey(pricing.at(at)) };
}

/** Invoice, statement and booked items of every account (or one) for an OPEN month, as they stand now. */
async function openMonth(w: Warehouse, month: string, closes: readonly MonthClose[], pricing: Pricing, accountId?: string) {
  const { start, end } = monthRange(month);
  const acct = accountId === undefined ? {} : { accountId };
  const last = closes.at(-1) ?? null;
  const own = await loadFacts(w, { from: start, to: end, ...acct }, pricing);
  const items = new Map<string, Item[]>();
  for (const [a, byMonth] of own) items.set(a, [...(byMonth.get(month) ?? [])]);
  // opening = closing of the last closed month (frozen) + every move booked since
  const opening = new Map<string, bigint>();
  if (last !== null) {
    for (const doc of await loadDocuments(w, last, accountId)) {
      opening.set(doc.account, parseMicros(doc.statement.closing_balance));
    }
    const deltas = await lateDeltas(w, last.month, pricing, accountId);
    const firstOpen = nextMonth(last.month);
    for (const [a, late] of deltas) {
      if (month === firstOpen) items.set(a, [...(items.get(a) ?? []), ...late]);
      else opening.set(a, (opening.get(a) ?? 0n) + late.reduce((t, i) => t + net(i), 0n));
    }
    if (month > firstOpen) {
      for (const [a, m] of await netMoves(w, { from: monthRange(firstOpen).start, to: start, ...acct })) opening.set(a, (opening.get(a) ?? 0n) + m);
    }
  } else {
    for (const [a, m] of await netMoves(w, { to: start, ...acct })) opening.set(a, m);
  }
  const ctx = await docContext(w, month, pricing, accountId);
  const accounts = [...new Set([...items.keys(), ...opening.keys()])].sort();
  return accounts.map((a) => {
    const its = items.get(a) ?? [];
    return {
      account: a, items: its,
      invoice: buildInvoice(a, month, its, null, ctx),
      statement: buildStatement(a, month, opening.get(a) ?? 0n, its, null, ctx),
    };
  });
}

/** "-12.345678" (6 decimals) → µc. */
function parseMicros(credits: string): bigint {
  const d = parseExactDecimal(credits);
  return d.units * 10n ** BigInt(6 - d.scale);
}

interface FrozenDocument {
  account: string;
  invoiceText: string;
  statementText: string;
  statement: Statement;
}

async function loadDocuments(w: Warehouse, close: MonthClose, accountId?: string): Promise<FrozenDocument[]> {
  const rows = await w.select(
    `SELECT account_id, invoice, statement FROM ${w.tables.billingDocuments} FINAL
     WHERE month = {month:String} AND close_id = {close_id:String}${accountId === undefined ? '' : ' AND account_id = {account_id:String}'}
     ORDER BY account_id`,
    { month: close.month, close_id: close.close_id, ...(accountId === undefined ? {} : { account_id: accountId }) },
  );
  return rows.map((r) => ({
    account: s(r['account_id']), invoiceText: s(r['invoice']), statementText: s(r['statement']),
    statement: JSON.parse(s(r['statement'])) as Statement,
  }));
}

function closeOf(closes: readonly MonthClose[], month: string): MonthClose | null {
  const last = closes.at(-1);
  if (last === undefined || month > last.month) return null;
  // closes form a prefix: a month without its own row (no facts when a later month closed) is closed with that later close
  return closes.find((c) => c.month >= month) ?? null;
}

/**
 * One account's invoice and statement of `month` as JSON text: a closed month's exactly as
 * frozen (an account without a snapshot: an empty closed invoice, statement at zero), an open
 * month's computed now. Throws BillingInputError on a bad month.
 */
export async function accountDocuments(w: Warehouse, accountId: string, month: string, prices: BillingPrices): Promise<{ invoice: string; statement: string; status: 'open' | 'closed' }> {
  monthRange(month);
  const closes = await listCloses(w);
  const close = closeOf(closes, month);
  if (close !== null) {
    const own = closes.find((c) => c.month === month);
    const doc = own === undefined ? undefined : (await loadDocuments(w, own, accountId))[0];
    if (doc !== undefined) return { invoice: doc.invoiceText, statement: doc.statementText, status: 'closed' };
    const ctx = await docContext(w, month, await pricingOf(w, prices), accountId);
    return {
      invoice: JSON.stringify(buildInvoice(accountId, month, [], close, ctx)),
      statement: JSON.stringify(buildStatement(accountId, month, 0n, [], close, ctx)),
      status: 'closed',
    };
  }
  const pricing = await pricingOf(w, prices);
  const docs = await openMonth(w, month, closes, pricing, accountId);
  const d = docs.find((x) => x.account === accountId);
  const ctx = d === undefined ? await docContext(w, month, pricing, accountId) : undefined;
  return {
    invoice: JSON.stringify(d?.invoice ?? buildInvoice(accountId, month, [], null, ctx!)),
    statement: JSON.stringify(d?.statement ?? buildStatement(accountId, month, 0n, [], null, ctx!)),
    status: 'open',
  };
}

/** One account's invoice of `month` (see accountDocuments). */
export async function invoiceFor(w: Warehouse, accountId: string, month: string, prices: BillingPrices): Promise<Invoice> {
  return JSON.parse((await accountDocuments(w, accountId, month, prices)).invoice) as Invoice;
}

/** One account's statement of `month` (see accountDocuments). */
export async function statementFor(w: Warehouse, accountId: string, month: string, prices: BillingPrices): Promise<Statement> {
  return JSON.parse((await accountDocuments(w, accountId, month, prices)).statement) as Statement;
}

/**
 * Every account's invoice lines of `month` (for `GET /admin/v1/billing/export`): by account id,
 * each account's lines in invoice order; a closed month's as frozen. Deterministic: the same
 * warehouse contents give the same lines in the same order.
 */
export async function invoiceLinesForMonth(w: Warehouse, month: string, prices: BillingPrices): Promise<InvoiceLine[]> {
  monthRange(month);
  const closes = await listCloses(w);
  const own = closes.find((c) => c.month === month);
  if (closeOf(closes, month) !== null) {
    if (own === undefined) return [];
    return (await loadDocuments(w, own)).flatMap((d) => (JSON.parse(d.invoiceText) as Invoice).lines);
  }
  return (await openMonth(w, month, closes, await pricingOf(w, prices))).flatMap((d) => d.invoice.lines);
}

/** The outcome of closeMonth. */
export interface CloseResult {
  month: string;
  /** false: it was closed already (by an earlier close of it or of a later month) */
  closed_now: boolean;
  closed_at: string;
  /** the months this call closed, oldest first (every open month up to `month`) */
  months: string[];
}

/**
 * Closes `month` and every open month before it (closed months are a prefix), each frozen as
 * snapshot rows: booked items, invoice and statement of every account that has anything up to
 * that month. Idempotent: a closed month answers `closed_now: false` and when it was closed.
 * The caller must make concurrent closes exclusive (the control route claims a lock); should
 * two snapshots of a month ever be written, readers use the earliest close only.
 * `now` (epoch ms) is the closing instant. Throws BillingInputError on a bad month or one that
 * has not started yet (parseClosableMonth).
 */
export async function closeMonth(w: Warehouse, month: string, prices: BillingPrices, now: number = Date.now()): Promise<CloseResult> {
  parseClosableMonth(month, now);
  const pricing = await pricingOf(w, prices);
  let closes = await listCloses(w);
  const already = closeOf(closes, month);
  if (already !== null) return { month, closed_now: false, closed_at: already.closed_at, months: [] };
  const last = closes.at(-1);
  let first = last === undefined ? await firstFactMonth(w) : nextMonth(last.month);
  if (first === null || first > month) first = month;
  const closedAt = new Date(now).toISOString();
  const months: string[] = [];
  for (let m = first; m <= month; m = nextMonth(m)) {
    const close: MonthClose = { month: m, close_id: randomUUID(), closed_at: closedAt };
    // The server's clock before the read: facts stamped (inserted_at) after it are late for this
    // month (lateCandidates); the same clock stamps facts, whatever `now` the caller gave.
    const asOf = String((await w.select(`SELECT toUnixTimestamp64Milli(now64(3)) AS ms`))[0]!['ms']);
    const docs = await openMonth(w, m, closes, pricing);
    await w.insertRows(w.tables.billingBooked, docs.flatMap((d) => d.items.map((it) => ({
      month: m, close_id: close.close_id, account_id: d.account, source_month: it.source, line_key: it.key, section: it.section,
      model: it.model, dimension: it.dimension, unit_price: it.unitPrice, quantity: it.quantity.toString(), amount_micros: it.amount.toString(),
    }))));
    await w.insertRows(w.tables.billingDocuments, docs.map((d) => ({
      month: m, close_id: close.close_id, account_id: d.account,
      invoice: JSON.stringify({ ...d.invoice, status: 'closed', closed_at: closedAt }),
      statement: JSON.stringify({ ...d.statement, status: 'closed', closed_at: closedAt }),
    })));
    // the close row last: a close is visible only with its whole snapshot written
    await w.insertRows(w.tables.billingCloses, [{
      month: m, close_id: close.close_id, closed_at: closedAt.replace('T', ' ').replace('Z', ''),
      facts_as_of: new Date(Number(asOf)).toISOString().replace('T', ' ').replace('Z', ''),
    }]);
    closes = await listCloses(w);
    months.push(m);
  }
  return { month, closed_now: true, closed_at: closedAt, months };
}

/** The earliest month with any fact, or null. */
async function firstFactMonth(w: Warehouse): Promise<string | null> {
  const rows = await w.select(
    `SELECT toUnixTimestamp64Milli(min(t)) AS ms FROM (
       SELECT min(ts) AS t FROM ${w.tables.usage} WHERE cost_micros > 0
       UNION ALL SELECT min(ts) AS t FROM ${w.tables.ledger}
     ) WHERE t > toDateTime64(0, 3, 'UTC')`,
  );
  const ms = rows[0]?.['ms'];
  if (ms === null || ms === undefined) return null;
  return monthOf(Number(ms));
}

// ---- customer credit history ----

/** One entry of `GET /v1/credits/history`. */
export interface CreditHistoryEntry {
  /** the ledger event id, or `usage:<YYYY-MM-DD>` */
  id: string;
  type: 'grant' | 'top_up' | 'refund' | 'adjustment' | 'usage';
  /** RFC 3339; a day's usage is booked at its last millisecond (`…T23:59:59.999Z`) */
  created_at: string;
  /** the credit reference (ledger entries only) */
  reference?: string;
  /** the UTC day (`usage` only) */
  date?: string;
  /** charged requests that day (`usage` only) */
  requests?: number;
  /** signed credits, 6 decimals (usage negative) */
  amount: string;
  amount_micro_credits: string;
  /** the account's balance right after this entry, credits (6 decimals) and µc */
  balance_after: string;
  balance_after_micro_credits: string;
}

interface RawEntry { sortMs: number; id: string; type: CreditHistoryEntry['type']; reference?: string; date?: string; requests?: number; amount: bigint }

/**
 * Every credit movement of one account, oldest first, with its running balance: ledger
 * entries (grant, top_up, refund, adjustment) at their instant, and one `usage` entry per UTC
 * day with the day's Σ charges, at the day's last millisecond. Ties keep ledger entries before
 * the day's usage, then order by id. Exact: balance_after of the newest entry is the account's
 * warehouse balance. Reads only the account given.
 */
export async function creditHistory(w: Warehouse, accountId: string): Promise<CreditHistoryEntry[]> {
  const raw: RawEntry[] = [];
  const ledger = await w.select(
    `SELECT event_id, kind, reference, toUnixTimestamp64Milli(ts) AS ms, toString(amount_micros) AS a
     FROM ${w.tables.ledger} FINAL WHERE account_id = {account_id:String} AND ${notRefused(w)}`,
    { account_id: accountId },
  );
  for (const r of ledger) {
    raw.push({ sortMs: Number(r['ms']), id: s(r['event_id']), type: s(r['kind']) as RawEntry['type'], reference: s(r['reference']), amount: BigInt(s(r['a'])) });
  }
  const days = await w.select(
    `SELECT toString(toDate(ts, 'UTC')) AS day, count() AS n, toString(sum(toInt128(cost_micros))) AS c
     FROM ${w.tables.usage} FINAL WHERE account_id = {account_id:String} AND cost_micros > 0 AND ${notRefused(w)}
     GROUP BY day`,
    { account_id: accountId },
  );
  for (const r of days) {
    const day = s(r['day']);
    raw.push({ sortMs: Date.parse(`${day}T00:00:00Z`) + 86_400_000 - 1, id: `usage:${day}`, type: 'usage', date: day, requests: Number(r['n']), amount: -BigInt(s(r['c'])) });
  }
  raw.sort((a, b) => a.sortMs - b.sortMs || (a.type === 'usage' ? 1 : 0) - (b.type === 'usage' ? 1 : 0) || cmpStr(a.id, b.id));
  let balance = 0n;
  return raw.map((e) => {
    balance += e.amount;
    return {
      id: e.id, type: e.type, created_at: new Date(e.sortMs).toISOString(),
      ...(e.reference !== undefined ? { reference: e.reference } : {}),
      ...(e.date !== undefined ? { date: e.date, requests: e.requests! } : {}),
      amount: credits6(e.amount), amount_micro_credits: e.amount.toString(),
      balance_after: credits6(balance), balance_after_micro_credits: balance.toString(),
    };
  });
}


/** One page of `creditHistoryPage`: newest first. */
export interface CreditHistoryPage {
  data: CreditHistoryEntry[];
  /** more entries after the last one (older), in the same window */
  hasMore: boolean;
}

/**
 * One page of `creditHistory`, newest first, paged in SQL: the running balance is a window sum
 * over the account's entries in creditHistory's order (ledger entries at their instant, a day's
 * usage at its last millisecond, ledger before usage on a tie, then id), so only the page
 * leaves the warehouse. `from`/`to`: epoch ms over `created_at`, `[from, to)`; `after`: the id of
 * the last entry of the previous page; `limit` 1..1000. Returns null when `after` is not an entry
 * of this account in the window (the routes answer 400 naming `cursor`). Ids compare as UTF-8
 * bytes (ClickHouse order), the same as creditHistory's for ASCII ids.
 */
export async function creditHistoryPage(
  w: Warehouse,
  accountId: string,
  o: { from?: number; to?: number; after?: string; limit: number },
): Promise<CreditHistoryPage | null> {
  if (!Number.isSafeInteger(o.limit) || o.limit < 1 || o.limit > 1000) throw new BillingInputError(`limit: must be 1..1000, got ${o.limit}`);
  const entries = `(
    SELECT event_id AS id, toString(kind) AS type, reference AS ref, '' AS day, toUInt64(0) AS n,
           toUnixTimestamp64Milli(ts) AS ms, 0 AS u, toInt128(amount_micros) AS a
    FROM ${w.tables.ledger} FINAL WHERE account_id = {account_id:String} AND ${notRefused(w)}
    UNION ALL
    SELECT concat('usage:', toString(d)) AS id, 'usage' AS type, '' AS ref, toString(d) AS day, count() AS n,
           toInt64(toUnixTimestamp(toDateTime(d, 'UTC'))) * 1000 + 86399999 AS ms, 1 AS u, -sum(toInt128(cost_micros)) AS a
    FROM ${w.tables.usage} FINAL WHERE account_id = {account_id:String} AND cost_micros > 0 AND ${notRefused(w)}
    GROUP BY toDate(ts, 'UTC') AS d
  )`;
  const conds: string[] = [];
  const params: Record<string, unknown> = { account_id: accountId, n: o.limit + 1 };
  if (o.from !== undefined) { conds.push('ms >= {from_ms:Int64}'); params['from_ms'] = o.from; }
  if (o.to !== undefined) { conds.push('ms < {to_ms:Int64}'); params['to_ms'] = o.to; }
  if (o.after !== undefined) {
    const at = await w.select(`SELECT ms, u FROM ${entries} WHERE id = {after:String}${conds.map((c) => ` AND ${c}`).join('')} ORDER BY ms, u LIMIT 1`,
      { ...params, after: o.after });
    if (at.length === 0) return null;
    conds.push('(ms, u, id) < ({after_ms:Int64}, {after_u:UInt8}, {after:String})');
    params['after_ms'] = Number(at[0]!['ms']);
    params['after_u'] = Number(at[0]!['u']);
    params['after'] = o.after;
  }
  const rows = await w.select(
    `SELECT id, type, ref, day, n, ms, toString(a) AS a_text, toString(bal) AS bal_text FROM (
       SELECT *, sum(a) OVER (ORDER BY ms, u, id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS bal FROM ${entries}
     ) ${conds.length > 0 ? `WHERE ${conds.join(' AND ')}` : ''}
     ORDER BY ms DESC, u DESC, id DESC LIMIT {n:UInt32}`,
    params,
  );
  const data = rows.slice(0, o.limit).map((r): CreditHistoryEntry => {
    const usage = s(r['type']) === 'usage';
    const amount = BigInt(s(r['a_text']));
    const balance = BigInt(s(r['bal_text']));
    return {
      id: s(r['id']), type: s(r['type']) as CreditHistoryEntry['type'], created_at: new Date(Number(r['ms'])).toISOString(),
      ...(usage ? { date: s(r['day']), requests: Number(r['n']) } : { reference: s(r['ref']) }),
      amount: credits6(amount), amount_micro_credits: amount.toString(),
      balance_after: credits6(balance), balance_after_micro_credits: balance.toString(),
    };
  });
  return { data, hasMore: rows.length > o.limit };
}
