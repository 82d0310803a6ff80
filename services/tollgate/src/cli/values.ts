// Typed option values of the operator CLI, checked before any request with the same parsers the
// API uses (parseCredits of @tollgate/pricing, parseTime of @tollgate/http, normaliseCidr of
// @tollgate/keys, the URL rules of @tollgate/control), so a malformed value is a usage error (exit 2) naming the option, never a
// request the server refuses (exit 1). The libraries are loaded only when such a value is given:
// most commands start without them.

import { UsageError, type Parsed } from './core.ts';

/** The word that sends `null` for a nullable field (as NONE of accounts.ts). */
const NONE = 'none';

/**
 * How one option's value is read:
 * - `credits`: decimal credits, at most 6 places, ≥ 0 (a limit or threshold; the API's limitMicros)
 * - `time`: RFC 3339, a date (00:00 UTC) or epoch milliseconds (parseTime); sent as typed
 * - `instant`: the same forms, sent as the RFC 3339 date-time the field takes (`expires_at`)
 * - `cidrs`: IPv4/IPv6 CIDRs (normaliseCidr), repeated or comma-separated
 * - `page`: a whole number 1-1000 (the `limit` of the usage and credit-history routes)
 * - `deliveries`: a whole number 1-DELIVERIES_KEPT (@tollgate/webhooks: the deliveries kept per webhook)
 * - `name`, `key-name`, `plan-name`, `reference`: operator text (`textProblem`)
 * - `upstream-limit`: a whole number within UPSTREAM_LIMITS[limit] of @tollgate/control (an
 *   upstream's weight, priority, max concurrency)
 * - `upstream-url`: an upstream's base URL (`upstreamBaseUrl` of @tollgate/control)
 * - `webhook-url`: a webhook's URL (`webhookUrl` of @tollgate/control)
 * - `filter`: a usage filter's id or model name (`filterValue` of @tollgate/warehouse: 1-256
 *   characters, no control characters), the rule every usage route applies
 * `nullable`: `none` is accepted (sends null / empties the list).
 */
export type ValueKind =
  | { kind: 'credits' | 'time' | 'instant' | 'cidrs' | 'page' | 'deliveries' | 'upstream-url' | 'webhook-url' | 'filter' | TextKind; nullable?: boolean }
  | { kind: 'upstream-limit'; limit: 'weight' | 'priority' | 'maxConcurrency'; nullable?: boolean };

/** The largest page the API serves (`limit` of /admin/v1/usage and of …/credits/history). */
export const MAX_PAGE = 1000;

const problemOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * `text` as credits (decimal, at most 6 places) → µc, checked like the API: `parseCredits` of
 * @tollgate/pricing (so `1e3`, `abc`, `0.0000001`, `1.1234567` are refused), `rule` the sign rule.
 * @throws UsageError naming `label`
 */
export async function creditsValue(text: string, label: string, rule: 'non-negative' | 'non-zero'): Promise<bigint> {
  const { parseCredits } = await import('@tollgate/pricing');
  let micros: bigint;
  try {
    micros = parseCredits(text);
  } catch (err) {
    throw new UsageError(`${label}: ${problemOf(err)}`);
  }
  if (rule === 'non-negative' && micros < 0n) throw new UsageError(`${label}: must not be negative${label.startsWith('--') ? ` (--${label.slice(2)} ${NONE} removes it)` : ''}`);
  if (rule === 'non-zero' && micros === 0n) throw new UsageError(`${label}: must not be zero`);
  return micros;
}

/**
 * Operator text the API stores: `name` an account's, upstream's or group's name (1-200 once
 * trimmed), `key-name` a key's (may be empty), `plan-name` a plan's (judged trimmed), `reference`
 * a credit reference (1-MAX_REFERENCE_CHARS once trimmed). No control characters, U+2028/9 or bidi
 * controls, well-formed Unicode (operatorTextProblem of @tollgate/control).
 */
export type TextKind = 'name' | 'key-name' | 'plan-name' | 'reference';

/**
 * What the API would say is wrong with `text` as `kind`, or undefined: its own rule functions
 * (@tollgate/control: boundedTextProblem, operatorTextProblem, planNameProblem; MAX_REFERENCE_CHARS
 * of @tollgate/events), loaded on first use.
 */
export async function textProblem(kind: TextKind, text: string): Promise<string | undefined> {
  const control = await import('@tollgate/control');
  switch (kind) {
    case 'name': return control.boundedTextProblem(text, control.MAX_NAME_CHARS);
    case 'key-name': return control.operatorTextProblem(text, control.MAX_NAME_CHARS);
    case 'plan-name': return control.planNameProblem(text);
    case 'reference': return control.boundedTextProblem(text, (await import('@tollgate/events')).MAX_REFERENCE_CHARS);
  }
}

/** `textProblem` as a UsageError naming `label` (an option, or a positional such as NAME). */
export async function checkText(kind: TextKind, text: string, label: string): Promise<void> {
  const problem = await textProblem(kind, text);
  if (problem) throw new UsageError(`${label}: ${problem}`);
}

/**
 * Refuses `body` (built from the command line, about to be sent as the API's `kind` body) when
 * the API's own schema would (`bodyProblem` of @tollgate/control: lengths after trimming and
 * NFC, list sizes, plan limits), with the API's message naming the body field.
 * @throws UsageError
 */
export async function checkBody(kind: import('@tollgate/control').OperatorBody, body: unknown): Promise<void> {
  const problem = (await import('@tollgate/control')).bodyProblem(kind, body);
  if (problem) throw new UsageError(`the API would refuse this: ${problem}`);
}

/** @throws UsageError naming `label` unless `text` is a whole number from `min` to `max` (decimal digits, an optional minus) */
function wholeNumber(text: string, label: string, min: number, max: number): void {
  if (!/^-?\d{1,16}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`${label} must be a whole number from ${min} to ${max}, not ${JSON.stringify(text)}`);
  }
}

/**
 * Checks every typed option in `values` against `kinds` (option name → kind), in place:
 * `instant` values become RFC 3339 (`2027-01-31T00:00:00.000Z`), the rest are kept as typed.
 * `--to` before `--from` (both `time`) is refused as the API refuses it.
 * @throws UsageError naming the option and the accepted forms, or the range
 */
export async function checkValues(values: Parsed['values'], kinds: Readonly<Record<string, ValueKind>>): Promise<void> {
  /** epoch ms of each `time` option given, for the range rule below */
  const times: Record<string, number> = {};
  for (const [name, spec] of Object.entries(kinds)) {
    const raw = values[name];
    if (raw === undefined) continue;
    const items = (Array.isArray(raw) ? raw : [raw]).map(String);
    if (spec.kind !== 'cidrs' && items.length !== 1) throw new UsageError(`--${name} takes one value`);
    if (spec.nullable && items.length === 1 && items[0] === NONE) continue;
    const label = `--${name}`;
    switch (spec.kind) {
      case 'credits':
        await creditsValue(items[0]!, label, 'non-negative');
        break;
      case 'time':
      case 'instant': {
        const { parseTime } = await import('@tollgate/http');
        let ms: number;
        try {
          ms = parseTime(items[0]!, label);
        } catch (err) {
          throw new UsageError(problemOf(err));
        }
        if (spec.kind === 'instant') values[name] = new Date(ms).toISOString();
        else times[name] = ms;
        break;
      }
      case 'cidrs': {
        const { normaliseCidr } = await import('@tollgate/keys');
        for (const entry of items.flatMap((s) => s.split(',')).map((s) => s.trim())) {
          if (entry === '' || entry === NONE) continue; // the list reader names these
          try {
            normaliseCidr(entry);
          } catch (err) {
            throw new UsageError(`${label}: ${problemOf(err)}`);
          }
        }
        break;
      }
      case 'upstream-limit': {
        const [min, max] = (await import('@tollgate/control')).UPSTREAM_LIMITS[spec.limit];
        wholeNumber(items[0]!, label, min, max);
        break;
      }
      case 'deliveries':
        wholeNumber(items[0]!, label, 1, (await import('@tollgate/webhooks')).DELIVERIES_KEPT);
        break;
      case 'upstream-url':
      case 'webhook-url': {
        const { upstreamBaseUrl, webhookUrl } = await import('@tollgate/control');
        try {
          if (spec.kind === 'upstream-url') upstreamBaseUrl(items[0]!);
          else webhookUrl(items[0]!);
        } catch (err) {
          // The API's message names its field (`base_url: …`); here the option is named instead.
          throw new UsageError(`${label}: ${problemOf(err).replace(/^(base_url|url): /, '')}`);
        }
        break;
      }
      case 'name': case 'key-name': case 'plan-name': case 'reference':
        await checkText(spec.kind, items[0]!, label);
        break;
      case 'page':
        wholeNumber(items[0]!, label, 1, MAX_PAGE);
        break;
      case 'filter': {
        const { filterValue } = await import('@tollgate/warehouse');
        try {
          filterValue(label, items[0]!);
        } catch (err) {
          throw new UsageError(problemOf(err));
        }
        break;
      }
    }
  }
  // The API's range rule (parseTimeRange of @tollgate/http, parseUsageParams of
  // @tollgate/warehouse: `to` before `from` is a 400), so it is a usage error here too.
  if (times.from !== undefined && times.to !== undefined && times.to < times.from) {
    throw new UsageError(`--to: ${new Date(times.to).toISOString()} is before --from (${new Date(times.from).toISOString()})`);
  }
}
