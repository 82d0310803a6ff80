// The price book: an append-only timeline of catalog versions. A request captures the version
// in force when it arrives and is priced with it to the end; a reloaded catalog appends a
// version effective from its load time; stored events name their version, so a bill can be
// recomputed later under exactly the prices it was charged at.

import { parseCatalog } from './catalog.ts';
import type { Catalog } from './catalog.ts';
import type { PriceVersion } from './price.ts';

/** A catalog as a version effective from `effectiveAt` (epoch ms); its id is the catalog's content id. */
export function priceVersion(catalog: Catalog, effectiveAt = 0): PriceVersion {
  if (!Number.isSafeInteger(effectiveAt) || effectiveAt < 0) {
    throw new RangeError(`effectiveAt must be epoch milliseconds (a non-negative integer), got ${effectiveAt}`);
  }
  return Object.freeze({ id: catalog.contentId, effectiveAt, catalog });
}

/** What a stored version looks like (e.g. a warehouse `price_versions` row). */
export interface StoredPriceVersion {
  readonly id: string;
  readonly effectiveAt: number;
  /** `catalog.document`: the validated catalog JSON */
  readonly catalog: unknown;
}

export class PriceBook {
  readonly #versions: PriceVersion[] = [];

  /** A book starting with `catalog`, in force from `effectiveAt` (default 0: since always). */
  constructor(catalog?: Catalog, effectiveAt = 0) {
    if (catalog !== undefined) this.append(catalog, effectiveAt);
  }

  /**
   * Rebuilds a book from stored versions (any order). Each catalog is re-validated and must
   * hash to its stored id. Throws CatalogError on an invalid catalog, Error on an id mismatch.
   */
  static fromStored(rows: Iterable<StoredPriceVersion>): PriceBook {
    const book = new PriceBook();
    for (const row of [...rows].sort((a, b) => a.effectiveAt - b.effectiveAt)) {
      const catalog = parseCatalog(row.catalog, `price version ${row.id}`);
      if (catalog.contentId !== row.id) {
        throw new Error(`price version ${row.id}: its catalog hashes to ${catalog.contentId}; the stored version was altered`);
      }
      book.append(catalog, row.effectiveAt, { force: true });
    }
    return book;
  }

  /**
   * Adds `catalog` as the version in force from `effectiveAt` (epoch ms). When its content equals
   * the latest version's, nothing is added and that version is returned (reloading an unchanged
   * file is a no-op). Throws RangeError when `effectiveAt` precedes the latest version's: the
   * timeline is append-only, history is never rewritten.
   */
  append(catalog: Catalog, effectiveAt: number, opts: { force?: boolean } = {}): PriceVersion {
    const v = priceVersion(catalog, effectiveAt);
    const last = this.#versions.at(-1);
    if (last !== undefined) {
      if (effectiveAt < last.effectiveAt) {
        throw new RangeError(`a price version cannot take effect (${effectiveAt}) before the latest one (${last.effectiveAt})`);
      }
      if (last.id === v.id && opts.force !== true) return last;
    }
    this.#versions.push(v);
    return v;
  }

  /** The version in force at `ts` (epoch ms): the latest with effectiveAt ≤ ts; undefined before the first. */
  at(ts: number): PriceVersion | undefined {
    for (let i = this.#versions.length - 1; i >= 0; i--) {
      const v = this.#versions[i] as PriceVersion;
      if (v.effectiveAt <= ts) return v;
    }
    return undefined;
  }

  /**
   * The version in force now (`now` defaults to Date.now()). Before the first version takes
   * effect, the first one. Throws Error on an empty book.
   */
  current(now: number = Date.now()): PriceVersion {
    const v = this.at(now) ?? this.#versions[0];
    if (v === undefined) throw new Error('the price book is empty');
    return v;
  }

  /** The version with this id (the latest entry when a catalog came back), or undefined. */
  byId(id: string): PriceVersion | undefined {
    for (let i = this.#versions.length - 1; i >= 0; i--) {
      const v = this.#versions[i] as PriceVersion;
      if (v.id === id) return v;
    }
    return undefined;
  }

  /** Every version, oldest first. */
  versions(): readonly PriceVersion[] {
    return Object.freeze([...this.#versions]);
  }

  /** The versions as storable rows (`catalog` is the validated JSON document). */
  toStored(): StoredPriceVersion[] {
    return this.#versions.map((v) => ({ id: v.id, effectiveAt: v.effectiveAt, catalog: v.catalog.document }));
  }
}
