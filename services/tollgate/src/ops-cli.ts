import { parseTime } from '@tollgate/http';
import { CatalogError, loadCatalogFile } from '@tollgate/pricing';
import { UsageError, cannotReach, parseCommand, refusedTokenHint, resolveToken, resolveUrl, stringOption, tokenSource, type Parsed } from './cli/core.ts';

export const OPS_HELP = `Usage: tollgate rebuild|reconcile [--url URL] [--timeout-ms N] [--rollups [--repair]]

  rebuild     rebuild hot state (balances, ledger entries, keys) from the warehouse as of
              its log positions; consumers then replay the log after those positions
  reconcile   prove hot state and the warehouse agree; prints every difference and every
              quarantined (poison) event by id

Both are carried out by the process that owns the warehouse (an aggregator running the
warehouse group, or the embedded all-in-one process).

Options:
  --url URL        that process's HTTP address (default $TOLLGATE_URL, else http://127.0.0.1:$PORT,
                   PORT=8080)
  --timeout-ms N   reconcile: how long to wait for the warehouse to catch up (default 30000)
  --rollups        reconcile: also prove the usage rollups equal the raw events (reads all usage)
  --repair         reconcile --rollups: then rebuild, from the raw events, the rollup rows that
                   differ, in buckets that ended 10 minutes ago or more (POST /ops/v1/rollups/repair),
                   and check again; exit 0 only if nothing differs any more
  -h, --help       show this help

The admin token comes from ADMIN_TOKEN, else DATA_DIR/admin-token.
Exit codes: 0 done / in agreement, 1 differences or failure, 2 bad usage.`;

/**
 * The command line of an ops command parsed (node:util parseArgs), with its URL and token.
 * @throws UsageError for an unknown option, a bad URL or no token
 */
function opsCommand(argv: string[], env: NodeJS.ProcessEnv, options: Parameters<typeof parseCommand>[1]): Parsed & { url: () => string; token: () => string } {
  const parsed = parseCommand(argv, options);
  return {
    ...parsed,
    url: () => resolveUrl(parsed.values, env),
    token: () => {
      const token = resolveToken(env, true);
      if (token === undefined) throw new UsageError(`set ADMIN_TOKEN (no ${env.DATA_DIR ?? './data'}/admin-token either)`);
      return token;
    },
  };
}

/** Runs `rebuild` or `reconcile` against a running process; returns the exit code. */
export async function runOps(command: 'rebuild' | 'reconcile', argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let url: string;
  let token: string;
  let timeout: string;
  let rollups = false;
  let repair = false;
  try {
    const parsed = opsCommand(argv, env, { 'timeout-ms': { type: 'string' }, rollups: { type: 'boolean' }, repair: { type: 'boolean' } });
    if (parsed.help) {
      process.stdout.write(`${OPS_HELP}\n`);
      return 0;
    }
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
    timeout = stringOption(parsed.values, 'timeout-ms') ?? '30000';
    if (!/^\d+$/.test(timeout)) throw new UsageError('--timeout-ms must be a whole number');
    if (parsed.values.rollups === true && command !== 'reconcile') throw new UsageError('--rollups is an option of reconcile');
    rollups = parsed.values.rollups === true;
    repair = parsed.values.repair === true;
    if (repair && !rollups) throw new UsageError('--repair goes with reconcile --rollups');
    url = parsed.url();
    token = parsed.token();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`tollgate ${command}: ${err.message}\n(see tollgate ${command} --help)\n`);
    return 2;
  }
  process.stderr.write(`tollgate ${command}: asking ${url} …\n`);
  const res = await fetch(command === 'rebuild' ? `${url}/ops/v1/rebuild` : `${url}/ops/v1/reconcile?timeout_ms=${timeout}${rollups ? '&rollups=true' : ''}`, {
    method: command === 'rebuild' ? 'POST' : 'GET',
    headers: { authorization: `Bearer ${token}` },
  }).catch((err: unknown) => {
    process.stderr.write(`tollgate ${command}: ${cannotReach(url, err)}\n`);
    return undefined;
  });
  if (!res) return 1;
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  if (!res.ok && (command !== 'reconcile' || res.status !== 409)) {
    // Not a report (a reconcile's 409 is one: its differences): an error answer, named as such.
    const error = (body.error ?? {}) as { type?: unknown; message?: unknown };
    const hint = res.status === 401 ? refusedTokenHint(url, tokenSource(env, true)) : '';
    process.stderr.write(`tollgate ${command}: failed (${res.status}${error.type ? ` ${String(error.type)}` : ''})${error.message ? `: ${String(error.message)}` : ''}${hint}\n`);
    return 1;
  }
  if (command === 'reconcile') {
    const diffs = Array.isArray(body.differences) ? body.differences.length : 0;
    const quarantined = Array.isArray(body.quarantined) ? body.quarantined as Array<Record<string, unknown>> : [];
    if (quarantined.length > 0) {
      // Poison events are in neither side's balances: named here so they can be explained.
      process.stderr.write(`tollgate reconcile: ${quarantined.length} quarantined event(s), in no balance:\n`);
      for (const q of quarantined) {
        process.stderr.write(`  ${String(q.event_id)}  ${String(q.group)} ${String(q.topic)}/${String(q.partition)}@${String(q.offset)}  ${String(q.kind)}: ${String(q.reason)}\n`);
      }
    }
    process.stderr.write(diffs === 0 && body.problem === undefined
      ? `tollgate reconcile: hot state and warehouse agree on the balances of ${String(body.accounts)} ${body.accounts === 1 ? 'account' : 'accounts'} (every account with a credit or usage)\n`
      : `tollgate reconcile: ${diffs} difference(s)${body.problem ? `: ${String(body.problem)}` : ''}\n`);
    const rolled = body.rollups as { ok?: unknown; mismatched_rows?: unknown; recent_rows?: unknown } | undefined;
    if (rolled) process.stderr.write(`tollgate reconcile: ${rollupsLine(rolled)}\n`);
    if (repair && rolled?.ok === true) process.stderr.write('tollgate reconcile: nothing to repair\n');
    if (!repair || rolled?.ok !== false) return body.ok === true ? 0 : 1;
    return (await repairRollups(url, token)) && diffs === 0 && body.problem === undefined ? 0 : 1;
  }
  process.stderr.write(`tollgate rebuild: ${String(body.balances)} balances, ${String(body.keys)} keys and ${String(body.spend_windows ?? 0)} spend-window counters restored in ${String(body.ms)} ms\n`);
  return 0;
}

/**
 * The rollup check of a reconcile report in words: which rows differ from the raw events in
 * settled buckets (what fails it, per grain) and, when any, how many in buckets still being
 * written (inserts in flight under traffic; not counted).
 */
function rollupsLine(r: { ok?: unknown; mismatched_rows?: unknown; recent_rows?: unknown }): string {
  const grains = (v: unknown) => (isRecordOf(v) ? v : {});
  const total = (v: Record<string, number>) => Object.values(v).reduce((a, b) => a + b, 0);
  const each = (v: Record<string, number>) => Object.entries(v).map(([g, n]) => `${g} ${n}`).join(', ');
  const settled = grains(r.mismatched_rows);
  const recent = grains(r.recent_rows);
  const inFlight = total(recent) > 0 ? `; ${total(recent)} row(s) in buckets still being written differ (${each(recent)}): inserts in flight, not counted` : '';
  return r.ok === true
    ? `rollups equal the raw events in every settled bucket${inFlight}`
    : `rollups differ from the raw events in ${total(settled)} row(s) of settled buckets (${each(settled)}); repair with tollgate reconcile --rollups --repair${inFlight}`;
}

/**
 * `reconcile --rollups --repair`'s second step: POST /ops/v1/rollups/repair, its report on
 * stdout, a summary on stderr. True when no rollup row differs from raw any more.
 */
async function repairRollups(url: string, token: string): Promise<boolean> {
  process.stderr.write('tollgate reconcile: rollups differ from raw events; repairing …\n');
  const res = await fetch(`${url}/ops/v1/rollups/repair`, { method: 'POST', headers: { authorization: `Bearer ${token}` } }).catch((err: unknown) => {
    process.stderr.write(`tollgate reconcile: ${cannotReach(url, err)}\n`);
    return undefined;
  });
  if (!res) return false;
  const body = (await res.json().catch(() => ({}))) as { repaired?: unknown; left_recent?: unknown; rollups?: { ok?: unknown }; error?: { message?: unknown } };
  process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  if (!res.ok || !isRecordOf(body.repaired) || !isRecordOf(body.left_recent)) {
    const why = typeof body.error?.message === 'string' ? `: ${body.error.message}` : '';
    process.stderr.write(`tollgate reconcile: rollup repair failed (${res.status})${why}\n`);
    return false;
  }
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  const left = sum(body.left_recent);
  process.stderr.write(`tollgate reconcile: ${sum(body.repaired)} rollup row(s) rebuilt${left > 0 ? `; ${left} in buckets not yet settled left as they are: run it again once they are 10 minutes past their end` : ''}; rollups ${body.rollups?.ok === true ? 'now equal the raw events' : 'still differ'}\n`);
  return body.rollups?.ok === true;
}

export const RERATE_HELP = `Usage: tollgate rerate --from TIME --to TIME [--catalog FILE] [--account ID] [--url URL]

Re-prices the usage stored in the warehouse with from <= ts < to and prints, per account, what
it was charged and what it costs now: under each event's own price version (proves a bill:
no difference expected), or with --catalog under that file's prices (previews a change).
Nothing is changed. Asked of the process that owns the warehouse, one day at a time; progress
goes to stderr, the report (JSON) to stdout.

Options:
  --from TIME      start, inclusive: RFC 3339 (2026-11-01T00:00:00Z), a date (2026-11-01, 00:00 UTC)
                   or epoch milliseconds
  --to TIME        end, exclusive, same forms
  --catalog FILE   a catalog file (libs/pricing/README.md, "Catalog file") to price under
  --account ID     only this account
  --url URL        that process's HTTP address (default $TOLLGATE_URL, else http://127.0.0.1:$PORT,
                   PORT=8080)
  -h, --help       show this help

The admin token comes from ADMIN_TOKEN, else DATA_DIR/admin-token.
Exit codes: 0 no differences, 1 differences (or events that could not be re-priced: see
"skipped"), 2 bad usage (a bad time, a bad catalog file, no admin token), 3 the run failed
(the URL cannot be reached, the server answered an error or an unreadable report): no verdict.`;

const DAY_MS = 86_400_000;
/** `tollgate rerate` exit code when the run itself failed (no verdict on the bill). */
export const RERATE_FAILED = 3;

function isRecordOf(v: unknown): v is Record<string, number> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

interface AccountSum { events: number; stored: bigint; rerated: bigint; different: number }

/** Runs `tollgate rerate` against a running process; returns the exit code (see RERATE_HELP). */
export async function runRerate(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const usage = (problem: string): number => {
    process.stderr.write(`tollgate rerate: ${problem}\n(see tollgate rerate --help)\n`);
    return 2;
  };
  let parsed: ReturnType<typeof opsCommand>;
  try {
    parsed = opsCommand(argv, env, { from: { type: 'string' }, to: { type: 'string' }, catalog: { type: 'string' }, account: { type: 'string' } });
  } catch (err) {
    if (err instanceof UsageError) return usage(err.message);
    throw err;
  }
  if (parsed.help) {
    process.stdout.write(`${RERATE_HELP}\n`);
    return 0;
  }
  if (parsed.positionals.length > 0) return usage(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
  const text = (name: string) => parsed.values[name] as string | undefined;
  const fromText = text('from');
  const toText = text('to');
  if (fromText === undefined || toText === undefined) return usage('--from and --to are required');
  let from: number;
  let to: number;
  try {
    from = parseTime(fromText, '--from');
    to = parseTime(toText, '--to');
  } catch (err) {
    return usage(err instanceof Error ? err.message : String(err));
  }
  if (to <= from) return usage('--to must be after --from');
  const catalogPath = text('catalog');
  let catalog: unknown;
  if (catalogPath !== undefined) {
    try {
      catalog = loadCatalogFile(catalogPath).document;
    } catch (err) {
      if (err instanceof CatalogError || (err as NodeJS.ErrnoException).code !== undefined) return usage(err instanceof Error ? err.message : String(err));
      throw err;
    }
  }
  const accountId = text('account');
  if (accountId === '') return usage('--account needs an account id');
  let token: string;
  let url: string;
  try {
    token = parsed.token();
    url = parsed.url();
  } catch (err) {
    if (err instanceof UsageError) return usage(err.message);
    throw err;
  }

  const accounts = new Map<string, AccountSum>();
  const versions: Record<string, number> = {};
  const skipped: Record<string, number> = {};
  const unreadable = new Set<string>();
  const eventsDifferent: unknown[] = [];
  let events = 0;
  let priceBook = 'stored';
  for (let start = from; start < to; start += DAY_MS) {
    const end = Math.min(to, start + DAY_MS);
    const res = await fetch(`${url}/ops/v1/rerate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ from: start, to: end, ...(catalog !== undefined ? { catalog } : {}), ...(accountId !== undefined ? { account_id: accountId } : {}) }),
    }).catch((err: unknown) => {
      process.stderr.write(`tollgate rerate: ${cannotReach(url, err)}\n`);
      return undefined;
    });
    // A failed run must not look like a bill that differs (1): it gets its own code.
    if (!res) return RERATE_FAILED;
    const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (!res.ok) {
      const message = (body.error as { message?: unknown } | undefined)?.message;
      const hint = res.status === 401 ? refusedTokenHint(url, tokenSource(env, true)) : '';
      process.stderr.write(`tollgate rerate: ${url} answered ${res.status}: ${String(message ?? JSON.stringify(body))}${hint}\n`);
      return res.status === 400 ? 2 : RERATE_FAILED;
    }
    if (!Array.isArray(body.accounts) || !isRecordOf(body.versions) || !isRecordOf(body.skipped) || !Array.isArray(body.unreadable_versions) || !Array.isArray(body.events_different)) {
      process.stderr.write(`tollgate rerate: ${url} answered ${res.status} without a rerate report\n`);
      return RERATE_FAILED;
    }
    priceBook = String(body.price_book);
    events += Number(body.events);
    let differing = 0;
    for (const a of body.accounts as Array<Record<string, string | number>>) {
      const sum = accounts.get(String(a.account_id)) ?? { events: 0, stored: 0n, rerated: 0n, different: 0 };
      sum.events += Number(a.events);
      sum.stored += BigInt(String(a.stored_micros));
      sum.rerated += BigInt(String(a.rerated_micros));
      sum.different += Number(a.events_different);
      differing += Number(a.events_different);
      accounts.set(String(a.account_id), sum);
    }
    for (const [k, v] of Object.entries(body.versions as Record<string, number>)) versions[k] = (versions[k] ?? 0) + v;
    for (const [k, v] of Object.entries(body.skipped as Record<string, number>)) skipped[k] = (skipped[k] ?? 0) + v;
    for (const u of body.unreadable_versions as string[]) unreadable.add(u);
    for (const e of body.events_different as unknown[]) if (eventsDifferent.length < 100) eventsDifferent.push(e);
    process.stderr.write(`tollgate rerate: ${new Date(start).toISOString()} .. ${new Date(end).toISOString()}: ${String(body.events)} events, ${differing} priced differently\n`);
  }

  const differences = [...accounts].filter(([, a]) => a.different > 0 || a.stored !== a.rerated).map(([id, a]) => ({
    account_id: id, events: a.events, events_different: a.different, stored_micros: a.stored.toString(),
    rerated_micros: a.rerated.toString(), difference_micros: (a.rerated - a.stored).toString(),
  }));
  const skippedCount = Object.values(skipped).reduce((x, y) => x + y, 0);
  process.stdout.write(`${JSON.stringify({
    from: new Date(from).toISOString(), to: new Date(to).toISOString(), price_book: priceBook, events, accounts: accounts.size,
    versions, differences, events_different: eventsDifferent, skipped, unreadable_versions: [...unreadable],
  }, null, 2)}\n`);
  for (const d of differences) {
    process.stderr.write(`  ${d.account_id}: charged ${d.stored_micros} µc, re-priced ${d.rerated_micros} µc (difference ${d.difference_micros} µc over ${d.events_different} of ${d.events} events)\n`);
  }
  if (skippedCount > 0) process.stderr.write(`tollgate rerate: ${skippedCount} event(s) could not be re-priced: ${JSON.stringify(skipped)}\n`);
  process.stderr.write(differences.length === 0 && skippedCount === 0
    ? `tollgate rerate: no differences over ${events} events of ${accounts.size} accounts\n`
    : `tollgate rerate: ${differences.length} account(s) with differences\n`);
  return differences.length === 0 && skippedCount === 0 ? 0 : 1;
}
