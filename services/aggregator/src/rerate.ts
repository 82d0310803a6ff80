// Re-pricing stored usage: proves a bill (every event under its own price version gives what it
// was charged) or previews a price change (every event under another catalog). Reads the
// warehouse only; it changes nothing.

import { toV2 } from '@tollgate/events';
import type { UsageEventV2 } from '@tollgate/events';
import { PriceBook, parseCatalog, priceRequest, priceVersion, quantities, resolveModel } from '@tollgate/pricing';
import type { Catalog, PriceVersion } from '@tollgate/pricing';
import type { StoredPriceVersionRow, Warehouse } from '@tollgate/warehouse';

/**
 * Statuses whose events were not charged when their stored cost is 0 (the gateway settles
 * `billable: false` for them: an upstream error, a stream error under the `none` billing
 * policy, an answer without readable usage). Re-pricing keeps them at 0, as it keeps an event
 * marked `answer_withheld` (a stream cut because its usage could not be written ahead).
 */
const UNBILLED_WHEN_ZERO = new Set(['upstream_error', 'stream_error', 'unmetered']);

/** Events per warehouse page. */
const PAGE = 5000;

/** Most event-level differences a report lists (the per-account sums cover all of them). */
export const MAX_LISTED_EVENTS = 100;

export interface RerateOptions {
  /** epoch ms, inclusive */
  from: number;
  /** epoch ms, exclusive */
  to: number;
  /** price every event under this catalog (a preview); absent: each under its own stored version */
  catalog?: Catalog;
  accountId?: string;
}

export interface RerateAccount {
  account_id: string;
  events: number;
  /** µc charged, as stored */
  stored_micros: string;
  /** µc under the price book re-applied */
  rerated_micros: string;
  /** rerated − stored, µc */
  difference_micros: string;
  /** events whose price differs */
  events_different: number;
}

export interface RerateReport {
  from: number;
  to: number;
  /** `stored` (each event under its own version) or the content id of the catalog applied */
  price_book: string;
  events: number;
  /** events priced under each version id */
  versions: Record<string, number>;
  /** every account with events in the window, by account id (`events_different` 0: it agrees) */
  accounts: RerateAccount[];
  /** the first MAX_LISTED_EVENTS events whose price differs */
  events_different: Array<{ event_id: string; account_id: string; ts: number; price_version: string; stored_micros: string; rerated_micros: string }>;
  /** events that could not be re-priced, by reason (`no_price_version`, `model_not_in_catalog:<model>`, `price_list_not_in_catalog:<list>`) */
  skipped: Record<string, number>;
  /** stored price versions whose catalog no longer loads (`<id>: <problem>`) */
  unreadable_versions: string[];
}

/**
 * Builds the price book from stored versions, leaving out (and naming) any whose catalog no
 * longer validates or no longer hashes to its id, so one bad row cannot stop a rerate.
 */
export function storedBook(rows: readonly StoredPriceVersionRow[]): { book: PriceBook; unreadable: string[] } {
  const book = new PriceBook();
  const unreadable: string[] = [];
  for (const row of [...rows].sort((a, b) => a.effectiveAt - b.effectiveAt || a.id.localeCompare(b.id))) {
    try {
      const catalog = parseCatalog(row.catalog, `price version ${row.id}`);
      if (catalog.contentId !== row.id) throw new Error(`its catalog hashes to ${catalog.contentId}`);
      book.append(catalog, row.effectiveAt, { force: true });
    } catch (err) {
      unreadable.push(`${row.id}: ${err instanceof Error ? err.message : String(err)}`.slice(0, 500));
    }
  }
  return { book, unreadable };
}

/**
 * The charge of one stored event under `version`, by the rules the gateway applies at
 * settlement (@tollgate/pricing `priceRequest`): its quantities, serving model, iterations,
 * conditions and price list as stored. `{skip}` with a reason when its model
 * (`model_not_in_catalog:<model>`) or its price list (`price_list_not_in_catalog:<list>`) is not
 * in the catalog. A refusal charged 0 was refused before any output and stays 0. An event that hit its hold (`cost_over_bound`) was charged its hold: it re-prices to
 * at most what was stored, since the hold is not stored.
 */
export function reprice(e: UsageEventV2, version: PriceVersion): { micros: bigint } | { skip: string } {
  const stored = BigInt(e.cost_micros);
  if (stored === 0n && (UNBILLED_WHEN_ZERO.has(e.status) || (e.anomalies ?? []).includes('answer_withheld'))) return { micros: 0n };
  const catalog = version.catalog;
  const found = (resolveModel(catalog, e.catalog_model) ?? resolveModel(catalog, e.model))?.model;
  if (found === undefined) return { skip: `model_not_in_catalog:${e.catalog_model}` };
  // as sent: under a group's model_mapping the upstream was sent another name, which the steps
  // and the served model then carry, and the settlement priced them as the requested model
  const model = e.upstream_model === found.upstreamModel ? found : { ...found, upstreamModel: e.upstream_model };
  // Priced without its list the event would come out at full price: not a re-price, a guess.
  if (e.price_list !== 'default' && !Object.hasOwn(catalog.priceLists, e.price_list)) return { skip: `price_list_not_in_catalog:${e.price_list}` };
  const priced = priceRequest(version, quantities(e.quantities), {
    model,
    servedModel: e.served_model,
    serviceTier: e.service_tier,
    inferenceGeo: e.inference_geo,
    speed: e.speed,
    stopReason: e.stop_reason,
    // Whether output reached the client is not stored; for a refusal the stored charge says it
    // (a refusal before any output was charged 0, whatever its token counts).
    ...(e.stop_reason === 'refusal' ? { outputSeen: stored > 0n } : {}),
    iterations: e.iterations.map((it) => ({ type: it.type, model: it.model, quantities: quantities(it.quantities) })),
    priceList: e.price_list,
  });
  let micros = priced.costMicros;
  if ((e.anomalies ?? []).includes('cost_over_bound') && micros > stored) micros = stored;
  return { micros };
}

/**
 * Re-prices every stored usage event with `from ≤ ts < to` (optionally of one account), under
 * its own stored price version (a version 1 event, which names none, under the version in
 * force at its `ts`) or under `options.catalog`, and reports per account what differs.
 */
export async function rerate(warehouse: Warehouse, options: RerateOptions): Promise<RerateReport> {
  const { book, unreadable } = storedBook(await warehouse.priceVersions());
  const preview: PriceVersion | undefined = options.catalog === undefined ? undefined : priceVersion(options.catalog, 0);
  const report: RerateReport = {
    from: options.from, to: options.to, price_book: preview === undefined ? 'stored' : preview.id,
    events: 0, versions: {}, accounts: [], events_different: [], skipped: {}, unreadable_versions: unreadable,
  };
  const byAccount = new Map<string, { events: number; stored: bigint; rerated: bigint; different: number }>();
  let after: { ts: number; eventId: string } | undefined;
  for (;;) {
    const page = await warehouse.usageEvents({
      from: options.from, to: options.to, limit: PAGE,
      ...(options.accountId !== undefined ? { accountId: options.accountId } : {}),
      ...(after !== undefined ? { after } : {}),
    });
    for (const raw of page) {
      const e = toV2(raw);
      report.events++;
      const version = preview ?? book.byId(e.price_version) ?? (raw.v === 2 ? undefined : book.at(e.ts));
      const r = version === undefined ? { skip: 'no_price_version' } : reprice(e, version);
      if ('skip' in r) {
        report.skipped[r.skip] = (report.skipped[r.skip] ?? 0) + 1;
        continue;
      }
      const id = (version as PriceVersion).id;
      report.versions[id] = (report.versions[id] ?? 0) + 1;
      const stored = BigInt(e.cost_micros);
      const acc = byAccount.get(e.account_id) ?? { events: 0, stored: 0n, rerated: 0n, different: 0 };
      acc.events++;
      acc.stored += stored;
      acc.rerated += r.micros;
      if (r.micros !== stored) {
        acc.different++;
        if (report.events_different.length < MAX_LISTED_EVENTS) {
          report.events_different.push({
            event_id: e.event_id, account_id: e.account_id, ts: e.ts, price_version: e.price_version,
            stored_micros: stored.toString(), rerated_micros: r.micros.toString(),
          });
        }
      }
      byAccount.set(e.account_id, acc);
    }
    if (page.length < PAGE) break;
    const last = page[page.length - 1]!;
    after = { ts: last.ts, eventId: last.event_id };
  }
  for (const [accountId, a] of [...byAccount].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
    report.accounts.push({
      account_id: accountId, events: a.events, stored_micros: a.stored.toString(), rerated_micros: a.rerated.toString(),
      difference_micros: (a.rerated - a.stored).toString(), events_different: a.different,
    });
  }
  return report;
}
