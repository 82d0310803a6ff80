// Lists of values that travel in the query text, not as query parameters.
//
// A ClickHouse server reads query parameters from the URL of the HTTP request and refuses any
// field over `http_max_field_value_size` (128 KiB by default): a parameter holding a list whose
// length grows with the data (a batch's event ids, the accounts with late facts) failed the whole
// query once it passed ~3,000 ids ("HTML Form Exception: Field value too long"). The query text
// goes in the request body, so a list there has no such cap; and the server reads it as data
// (a one-column table parsed by the JSONCompactEachRow input format), which costs it about a
// fifth of the CPU of the same ids as an `Array(String)` parameter (bench/README.md, "The
// rollup_skip check's ids in the query body"). Small scalars (times, one account) stay
// parameters.

/** The default `max_query_size` of ClickHouse (bytes of query text its parser takes). */
const DEFAULT_MAX_QUERY_SIZE = 262_144;

/**
 * `text` as one ClickHouse SQL string literal, quotes included. ClickHouse's rule for a quoted
 * string (docs "Syntax", String literals): a backslash escapes the character after it, and the
 * literal ends at the first unescaped `'`; every other byte, newlines and non-ASCII included,
 * stands for itself. So `\` and `'` are the two characters to escape, and they are.
 */
export function sqlString(text: string): string {
  return `'${text.replace(/[\\']/g, '\\$&')}'`;
}

/**
 * `values` as a one-column table (column `v`, type String) in the query text, for
 * `x IN ${stringTable(ids)}` or a join: `(SELECT v FROM format(JSONCompactEachRow, 'v String', '…'))`,
 * one row per value in order, duplicates kept. Each value goes through JSON.stringify (the
 * encoding the usage insert uses too, so an id compares equal to the one stored) and the rows
 * through sqlString, so no value can end the literal. An empty list is a table of no rows.
 * Run the query with `sizeSettings(query)`: past 256 KiB of text a server's parser needs
 * `max_query_size` raised.
 */
export function stringTable(values: readonly string[]): string {
  // format() reads no columns from empty data: the empty table is spelled out.
  if (values.length === 0) return "(SELECT '' AS v WHERE 0)";
  let rows = '';
  for (let i = 0; i < values.length; i++) rows += `${i === 0 ? '' : '\n'}[${JSON.stringify(values[i])}]`;
  return `(SELECT v FROM format(JSONCompactEachRow, 'v String', ${sqlString(rows)}))`;
}

/**
 * Bytes the client may add to a query's text before sending it (`\nFORMAT JSONEachRow` and the
 * like), with room to spare.
 */
const QUERY_SUFFIX_ALLOWANCE = 1024;

/**
 * `{ max_query_size }` large enough for `query` (its UTF-8 bytes plus QUERY_SUFFIX_ALLOWANCE for
 * what the client appends) when that passes the default 256 KiB, else nothing: the setting a
 * query carrying a stringTable needs, per query, so no server's configuration has to change.
 * Measured against the text as given, a query just under the limit failed once the client
 * added its FORMAT clause (`Max query size exceeded`, 262,125–262,143 bytes).
 */
export function sizeSettings(query: string): { max_query_size?: string } {
  // UTF-16 units × 3 bounds the UTF-8 bytes; the exact count only when that bound is too big.
  if (query.length * 3 + QUERY_SUFFIX_ALLOWANCE <= DEFAULT_MAX_QUERY_SIZE) return {};
  const need = Buffer.byteLength(query) + QUERY_SUFFIX_ALLOWANCE;
  return need <= DEFAULT_MAX_QUERY_SIZE ? {} : { max_query_size: String(need) };
}

/**
 * `items` in order, cut into runs whose summed `cost` stays within `budget` (a query's text, a
 * URL field's bytes): each run has at least one item, so one item over the budget is a run of
 * its own.
 */
export function chunksWithin<T>(items: readonly T[], budget: number, cost: (item: T) => number): T[][] {
  const out: T[][] = [];
  let chunk: T[] = [];
  let size = 0;
  for (const item of items) {
    const c = cost(item);
    if (chunk.length > 0 && size + c > budget) {
      out.push(chunk);
      chunk = [];
      size = 0;
    }
    chunk.push(item);
    size += c;
  }
  if (chunk.length > 0) out.push(chunk);
  return out;
}
