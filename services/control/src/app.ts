import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { gatewayError } from '@tollgate/anthropic';
import {
  MAX_ACCESS_ENTRIES, MAX_CIDR_CHARS, MAX_MONEY_MICROS, MAX_REFERENCE_CHARS, NotPublishedError, type AccountRecord, type KeyRecord, type LedgerEvent,
} from '@tollgate/events';
import { createHttpServer, guardOperatorRoutes } from '@tollgate/http';
import { CidrError, displayPrefix, generateSecret, hashSecret, normaliseCidr } from '@tollgate/keys';
import { balanceView, findPriceList, formatCredits, MoneyError, parseCredits, resolveModel, type Catalog } from '@tollgate/pricing';
import type { LedgerEntry, SpendWindowName } from '@tollgate/ledger';
import type { ControlDeps } from './deps.ts';
import { bodyErrorMap, bodyProblems, MAX_NAME_CHARS, operatorTextProblem } from './body-problems.ts';
import { newId, nextVersion } from './ids.ts';
import { PlanBody, registerPlanRoutes } from './plans.ts';
import { eventsUnwritable, guardHotState, KEY_DIRECTORY_READS } from './hot-state.ts';
import { ControlRecordRegistry, putRecord, recordVersion, type DirectoryRecordEvent } from './record-registry.ts';
import { recordExclusive, type RecordFence } from './record-lock.ts';
import { findPlan } from '@tollgate/limits';
import { DiskReserveLowError } from '@tollgate/events';

/**
 * Text that ends up in an event (names, credit references): well-formed Unicode (no lone
 * surrogate), no control characters (C0, DEL, C1) and no line or paragraph separator
 * (U+2028/U+2029: line breaks to every log and CSV reader), no bidi control, bounded
 * (`operatorTextProblem`); then trimmed of spaces and put in Unicode NFC, so a reference pasted
 * as `café` in one tool and `cafe\u0301` in another is one reference (one credit), not two.
 * Judged as sent, before the trim: a trailing `\n` or `\t` used to be trimmed away and the
 * reference accepted. Every later stage (Kafka JSON, ClickHouse, Redis) must be able to hold
 * what this API accepts, or one request would stop the pipeline behind it.
 */
const storedText = (min: number, max: number) => z.string().superRefine((v, ctx) => {
  const problem = operatorTextProblem(v, max);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
}).transform((v) => v.trim().normalize('NFC')).pipe(z.string().min(min).max(max));
/**
 * A credit `reference`: `storedText`, and once trimmed no invisible character (Unicode
 * Default_Ignorable_Code_Point: zero-width space and joiners, soft hyphen, word joiner,
 * combining grapheme joiner, variation selectors, tags, …). A reference names one entry: an
 * `inv-9` with a U+200B inside reads as `inv-9` in every history, statement and CSV, yet would be
 * another reference and so another credit. A name may carry such characters (an emoji's joiner).
 */
const referenceText = (max: number) => storedText(1, max).superRefine((v, ctx) => {
  const hidden = /\p{Default_Ignorable_Code_Point}/u.exec(v);
  if (hidden) {
    const code = hidden[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    ctx.addIssue({ code: 'custom', message: `must not contain invisible characters (Unicode default-ignorable, such as U+200B zero width space): U+${code} at index ${hidden.index}` });
  }
});
const AccountCreate = z.object({ name: storedText(1, MAX_NAME_CHARS) }).strict();
/** A spend limit in decimal credits (number or string, ≤ 6 decimals); null clears it. */
const creditsField = z.union([z.number(), z.string().max(40)]).nullable().optional();
/** A plan id (`/admin/v1/plans`); null: the next level's plan (key → account → DEFAULT_PLAN). */
const planField = z.string().min(1).max(200).nullable().optional();
/** An upstream group id (`/admin/v1/groups`, `default` included); null: the next level's group (key → account → default). */
const groupField = z.string().min(1).max(200).nullable().optional();
const AccountPatch = z.object({
  name: storedText(1, MAX_NAME_CHARS).optional(),
  status: z.enum(['active', 'suspended', 'disabled']).optional(),
  /** a catalog price list name; null or "default": the catalog's own prices */
  price_list: z.string().max(200).nullable().optional(),
  plan_id: planField,
  group_id: groupField,
  daily_credits: creditsField,
  monthly_credits: creditsField,
  overdraft_credits: creditsField,
  low_balance_credits: creditsField,
  admission_policy: z.enum(['strict', 'clamp']).nullable().optional(),
}).strict();
const KeyPatch = z.object({
  name: storedText(0, MAX_NAME_CHARS).optional(),
  /** `revoked` is final and only reached by DELETE */
  status: z.enum(['active', 'disabled']).optional(),
  plan_id: planField,
  group_id: groupField,
  hourly_credits: creditsField,
  daily_credits: creditsField,
  total_credits: creditsField,
  ip_allowlist: z.array(z.string().max(MAX_CIDR_CHARS)).max(MAX_ACCESS_ENTRIES).nullable().optional(),
  allowed_models: z.array(z.string().min(1).max(200)).max(MAX_ACCESS_ENTRIES).nullable().optional(),
  /** RFC 3339 date-time, or null for never */
  expires_at: z.string().max(64).nullable().optional(),
}).strict();
const KeyCreate = z.object({ name: storedText(0, MAX_NAME_CHARS).optional() }).strict().optional();
const CreditGrant = z.object({
  credits: z.union([z.number(), z.string().max(40)]),
  reference: referenceText(MAX_REFERENCE_CHARS),
  kind: z.enum(['grant', 'top_up', 'adjustment', 'refund']).optional(),
}).strict();

/** The operator bodies whose every rule needs no state: what the operator CLI checks before sending (`bodyProblem`). */
const OPERATOR_BODIES = {
  'account-create': AccountCreate, 'account-patch': AccountPatch, 'key-create': KeyCreate, 'key-patch': KeyPatch,
  'credit-grant': CreditGrant, plan: PlanBody,
} as const;
export type OperatorBody = keyof typeof OPERATOR_BODIES;

/**
 * What this API would refuse in `body` as the body of `kind` (its own schema and messages:
 * lengths after trimming and NFC, list sizes, limits), or undefined. The operator CLI calls it on
 * the body it built, so a value the API refuses without looking at any state is a usage error
 * (exit 2) and never a request; rules that need state (a plan id that exists, a catalog price
 * list) stay the route's.
 */
export function bodyProblem(kind: OperatorBody, body: unknown): string | undefined {
  const r = (OPERATOR_BODIES[kind] as z.ZodType).safeParse(body, { error: bodyErrorMap });
  return r.success ? undefined : bodyProblems(r.error).join('; ');
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body, { error: bodyErrorMap });
  if (!r.success) throw gatewayError('invalid_request', bodyProblems(r.error).join('; '));
  return r.data;
}

/**
 * One answer for a credit that would take the balance outside ±MAX_MONEY_MICROS, whether this
 * process saw it coming or the ledger refused it atomically (another control process's grant
 * landed first): 400, naming the bound; nothing was applied.
 */
function balanceOutOfRange() {
  return gatewayError('invalid_request',
    `credits: not applied: the balance would leave ±${formatCredits(MAX_MONEY_MICROS)} credits (${MAX_MONEY_MICROS} micro-credits, 2^53 − 1, the bound every stage holds exactly)`);
}

/**
 * A spend limit of a PATCH body in µc (decimal text) for the record: undefined (not given)
 * stays undefined, null clears, else decimal credits ≥ 0 within MAX_MONEY_MICROS.
 * @throws GatewayError 400 naming the field
 */
/** The spend windows of an account's and a key's limit fields (README "Spend limits"). */
const ACCOUNT_WINDOWS = [['daily_credits', 'account_daily'], ['monthly_credits', 'account_monthly']] as const;
const KEY_WINDOWS = [['hourly_credits', 'key_hourly'], ['daily_credits', 'key_daily'], ['total_credits', 'key_total']] as const;

function limitMicros(field: string, value: number | string | null | undefined): string | null | undefined {
  if (value === undefined || value === null) return value;
  let micros: bigint;
  try {
    micros = parseCredits(value);
  } catch (err) {
    if (err instanceof MoneyError) throw gatewayError('invalid_request', `${field}: ${err.message}`);
    throw err;
  }
  if (micros < 0n) throw gatewayError('invalid_request', `${field}: must not be negative (null removes the limit)`);
  if (micros > MAX_MONEY_MICROS) throw gatewayError('invalid_request', `${field}: must be at most ${formatCredits(MAX_MONEY_MICROS)}`);
  return micros.toString();
}

/**
 * A record's µc limit as the API shows it: exact decimal credits as a string ("0.000001",
 * "9007199254.740991"), or null when none is set. Never a JSON number: a double cannot hold
 * every µc amount up to MAX_MONEY_MICROS, and a limit must echo back as it was set.
 */
const creditsView = (micros: string | null | undefined) => (micros === null || micros === undefined ? null : formatCredits(BigInt(micros)));

function keyView(k: KeyRecord) {
  return {
    id: k.id, account_id: k.account_id, name: k.name, prefix: k.prefix, status: k.status,
    created_at: new Date(k.created_at).toISOString(),
    revoked_at: k.revoked_at === null ? null : new Date(k.revoked_at).toISOString(),
    plan_id: k.plan_id ?? null,
    group_id: k.group_id ?? null,
    hourly_credits: creditsView(k.hourly_credits),
    daily_credits: creditsView(k.daily_credits),
    total_credits: creditsView(k.total_credits),
    ip_allowlist: k.ip_allowlist ?? [],
    allowed_models: k.allowed_models ?? [],
    expires_at: k.expires_at === null || k.expires_at === undefined ? null : new Date(k.expires_at).toISOString(),
  };
}

/** Mounts the operator API (`/admin/v1/*`, admin token) on a server from `createHttpServer`. */
export function registerControl(app: FastifyInstance, deps: ControlDeps): void {
  // Every route reaches hot state only through these: Redis unreachable is one 503, everywhere.
  // While the hot state waits for a rebuild (Redis lost its data) every route that reads or
  // writes it answers 503 state_unavailable, never an empty list or "does not exist".
  const unguarded = deps.balances;
  const lost = () => unguarded.stateLost();
  // What this process wrote and a rebuild of hot state may not have read (its record still in
  // the spool, Kafka away): put back when the state is seen rebuilt.
  const records = deps.records ?? new ControlRecordRegistry(unguarded, deps.keys, deps.log, {
    onError: (err) => app.log.warn({ err }, 'control record registry: could not read or write hot state; trying again'),
    onRestored: (r) => app.log.warn(r, 'hot state was rebuilt: put back the control records this process wrote that the log had not acknowledged'),
    onPutError: (err) => app.log.warn({ err }, 'a control record is written ahead but not yet in the key directory (Redis refused it); the ledger group puts it there'),
  });
  if (!deps.records) app.addHook('onClose', async () => records.stop());
  deps = { ...deps, keys: guardHotState(deps.keys, lost, KEY_DIRECTORY_READS), balances: guardHotState(deps.balances, lost) };
  // Every change of an existing record reads it, changes it and writes it under this lock, so two
  // changes of one record never both start from the same read (docs/decisions.md, "A record's
  // changes are made one at a time").
  const exclusive = recordExclusive(deps.balances, unguarded, {
    version: async (record) => {
      const [kind, id] = [record.slice(0, record.indexOf(':')), record.slice(record.indexOf(':') + 1)];
      const stored = kind === 'key' ? await deps.keys.key(id) : kind === 'account' ? await deps.keys.account(id) : await deps.keys.plan(id);
      return stored?.version;
    },
  });
  /**
   * Starts afresh each spend window whose limit `next` sets and `current` did not have (null or
   * absent): a limit counts from the moment it is set, also one removed and set again within a
   * window (the window kept counting what was held under the first one). A changed limit keeps
   * its count. Unguarded: a lost state is rebuilt with every window raised anyway.
   */
  const restartWindows = async <R extends object>(accountId: string, keyId: string, current: R, next: R,
    windows: ReadonlyArray<readonly [keyof R, SpendWindowName]>): Promise<void> => {
    const names = windows.filter(([field]) => current[field] == null && next[field] != null).map(([, name]) => name);
    if (names.length > 0) await unguarded.restartWindows(accountId, keyId, names);
  };
  const applyTimeoutMs = deps.applyTimeoutMs ?? 10_000;
  const claimTtlMs = deps.claimTtlMs ?? applyTimeoutMs + 20_000;

  /**
   * Refuses a write before anything changes while this process's events cannot be written ahead.
   * A disk only below its reserve (DiskReserveLowError) still records: an operator's few small
   * records (a revocation in an incident) are what the reserve is for too.
   */
  const recordable = () => {
    const problem = deps.log.writeAheadProblem?.();
    if (problem && !(problem instanceof DiskReserveLowError)) throw eventsUnwritable();
  };
  /**
   * Written ahead to the log (durable, replayable), then to the directory at once
   * (read-your-writes): ControlRecordRegistry.save. Refused with 503 before anything changes
   * while the events cannot be written ahead, or hot state is lost or unreachable (the guarded
   * `stateLost` throws then): once written ahead the write succeeds whatever the directory does.
   */
  const saveRecord = async (event: DirectoryRecordEvent, fence?: RecordFence) => {
    recordable();
    await deps.balances.stateLost();
    // A change of an existing record writes only while it still holds the record's lock.
    await fence?.();
    const put = { failed: false };
    try {
      await records.save(event, () => putRecord(deps.keys, event).catch((err: unknown) => { put.failed = true; throw err; }));
    } catch (err) {
      // Refused by the log inside the call: nothing was changed (a 500 before).
      if (err instanceof NotPublishedError) throw eventsUnwritable(err);
      throw err;
    } finally {
      // On the log, not in the directory: no later change of the record may start from the older
      // one there (best effort: a store that refuses this refuses the next change's lock too).
      if (put.failed) await fence?.behind(recordVersion(event)).catch((err: unknown) => app.log.warn({ err }, 'could not mark a control record behind its last change'));
    }
  };

  const catalogNow = (): Catalog => deps.prices?.current().catalog ?? deps.catalog;

  const accountView = async (a: AccountRecord) => {
    const b = await deps.balances.get(a.id);
    return {
      id: a.id, name: a.name, status: a.status, created_at: new Date(a.created_at).toISOString(),
      price_list: a.price_list ?? 'default',
      plan_id: a.plan_id ?? null,
      group_id: a.group_id ?? null,
      daily_credits: creditsView(a.daily_credits),
      monthly_credits: creditsView(a.monthly_credits),
      overdraft_credits: creditsView(a.overdraft_credits),
      low_balance_credits: creditsView(a.low_balance_credits),
      admission_policy: a.admission_policy ?? null,
      currency: catalogNow().credit.currency,
      ...balanceView(b),
    };
  };

  /** `id` when it names a live plan; else 400 (an unknown plan would silently be the default). */
  const existingPlan = async (id: string): Promise<string> => {
    // Seed plans (free, pro, max-5x, max-20x) are live without a stored record.
    const plan = await findPlan(id, (i) => deps.keys.plan(i));
    if (!plan) throw gatewayError('invalid_request', `plan_id: ${JSON.stringify(id)} is not a plan (GET /admin/v1/plans lists them)`);
    return id;
  };

  /** `id` when it names a live upstream group (`default` always does); else 400. */
  const existingGroup = async (id: string): Promise<string> => {
    if (id === 'default') return id;
    const g = await deps.pool?.group(id);
    if (!g || g.deleted) throw gatewayError('invalid_request', `group_id: ${JSON.stringify(id)} is not a group (GET /admin/v1/groups lists them)`);
    return id;
  };

  const findAccount = async (id: string) => {
    const a = await deps.keys.account(id);
    if (!a) throw gatewayError('not_found', `account ${id} does not exist`);
    return a;
  };

  const saveAccount = (a: AccountRecord, fence?: RecordFence) => saveRecord({ type: 'account', event_id: `account:${a.id}:${a.version}`, ts: Date.now(), account: a }, fence);
  const saveKey = (k: KeyRecord, fence?: RecordFence) => saveRecord({ type: 'key', event_id: `key:${k.id}:${k.version}`, ts: Date.now(), key: k }, fence);

  app.register(async (admin) => {
    guardOperatorRoutes(admin, { adminToken: deps.adminToken, financeToken: deps.financeToken });
    registerPlanRoutes(admin, { keys: deps.keys, exclusive, savePlan: (plan, fence) => saveRecord({ type: 'plan', event_id: `plan:${plan.id}:${plan.version}`, ts: Date.now(), plan }, fence) });

    admin.post('/admin/v1/accounts', async (request, reply) => {
      const body = parse(AccountCreate, request.body);
      const now = Date.now();
      const account: AccountRecord = { id: newId('acct'), name: body.name, status: 'active', created_at: now, version: nextVersion(undefined) };
      await saveAccount(account);
      return reply.code(201).send(await accountView(account));
    });

    admin.get('/admin/v1/accounts', async () => {
      const all = await deps.keys.accounts();
      all.sort((a, b) => a.created_at - b.created_at);
      return { data: await Promise.all(all.map(accountView)) };
    });

    admin.get('/admin/v1/accounts/:id', async (request) => {
      const { id } = request.params as { id: string };
      return accountView(await findAccount(id));
    });

    admin.patch('/admin/v1/accounts/:id', async (request) => {
      const { id } = request.params as { id: string };
      const { price_list: list, plan_id: planId, group_id: groupId, daily_credits: daily, monthly_credits: monthly,
        overdraft_credits: overdraft, low_balance_credits: lowBalance, ...body } = parse(AccountPatch, request.body);
      return exclusive(`account:${id}`, async (fence) => {
        const current = await findAccount(id);
        const next: AccountRecord = { ...current, ...body, version: nextVersion(current.version) };
        if (planId !== undefined) next.plan_id = planId === null ? null : await existingPlan(planId);
        if (groupId !== undefined) next.group_id = groupId === null ? null : await existingGroup(groupId);
        const limits = { daily_credits: daily, monthly_credits: monthly, overdraft_credits: overdraft, low_balance_credits: lowBalance };
        for (const [field, value] of Object.entries(limits)) {
          const micros = limitMicros(field, value);
          if (micros !== undefined) next[field as keyof typeof limits] = micros;
        }
        if (list !== undefined) {
          // Only a list the catalog in force defines: an unknown name would silently price at the default.
          const catalog = catalogNow();
          if (list === null || list === 'default') delete next.price_list;
          else if (findPriceList(catalog, list) === null) {
            const names = Object.keys(catalog.priceLists);
            throw gatewayError('invalid_request', `price_list: ${JSON.stringify(list)} is not a price list of the catalog in force (${names.length > 0 ? names.map((n) => JSON.stringify(n)).join(', ') + ', or ' : ''}"default" / null for the catalog's own prices)`);
          } else next.price_list = list;
        }
        // A limit set where none was counts from now: its open window starts afresh, before any
        // gateway can see the limit (BalanceStore.restartWindows; README "Spend limits").
        await restartWindows(id, '', current, next, ACCOUNT_WINDOWS);
        await saveAccount(next, fence);
        return accountView(next);
      });
    });

    admin.post('/admin/v1/accounts/:id/keys', async (request, reply) => {
      const { id } = request.params as { id: string };
      const body = parse(KeyCreate, request.body) ?? {};
      await findAccount(id);
      const secret = generateSecret();
      const key: KeyRecord = {
        id: newId('key'), account_id: id, name: body.name ?? '', prefix: displayPrefix(secret),
        hash: hashSecret(secret, deps.keyHashSecret), status: 'active', created_at: Date.now(),
        revoked_at: null, version: nextVersion(undefined),
      };
      await saveKey(key);
      // The only time the secret is ever shown; it is stored nowhere.
      return reply.code(201).send({ ...keyView(key), key: secret });
    });

    admin.get('/admin/v1/accounts/:id/keys', async (request) => {
      const { id } = request.params as { id: string };
      await findAccount(id);
      return { data: (await deps.keys.keysOf(id)).map(keyView) };
    });

    admin.get('/admin/v1/keys/:id', async (request) => {
      const { id } = request.params as { id: string };
      const current = await deps.keys.key(id);
      if (!current) throw gatewayError('not_found', `key ${id} does not exist`);
      return keyView(current);
    });

    // Access rules, plan and spend limits of a key: each field given replaces the stored one,
    // null clears it. Gateways see the change within their key cache TTL (500 ms).
    admin.patch('/admin/v1/keys/:id', async (request) => {
      const { id } = request.params as { id: string };
      const body = parse(KeyPatch, request.body);
      return exclusive(`key:${id}`, async (fence) => {
        const current = await deps.keys.key(id);
        if (!current) throw gatewayError('not_found', `key ${id} does not exist`);
        if (current.status === 'revoked') throw gatewayError('conflict', `key ${id} is revoked; a revoked key cannot be changed`);
        const next: KeyRecord = { ...current, version: nextVersion(current.version) };
        if (body.name !== undefined) next.name = body.name;
        if (body.status !== undefined) next.status = body.status;
        if (body.plan_id !== undefined) next.plan_id = body.plan_id === null ? null : await existingPlan(body.plan_id);
        if (body.group_id !== undefined) next.group_id = body.group_id === null ? null : await existingGroup(body.group_id);
        for (const field of ['hourly_credits', 'daily_credits', 'total_credits'] as const) {
          const micros = limitMicros(field, body[field]);
          if (micros !== undefined) next[field] = micros;
        }
        await restartWindows(current.account_id, id, current, next, KEY_WINDOWS);
        if (body.ip_allowlist !== undefined) {
          const cidrs = (body.ip_allowlist ?? []).map((entry, i) => {
            try {
              return normaliseCidr(entry);
            } catch (err) {
              if (err instanceof CidrError) throw gatewayError('invalid_request', `ip_allowlist[${i}]: ${err.message}`);
              throw err;
            }
          });
          next.ip_allowlist = [...new Set(cidrs)];
        }
        if (body.allowed_models !== undefined) {
          const catalog = catalogNow();
          // Stored as catalog ids: the gateway compares the id a request's model resolves to, so an
          // alias and its model are one entry. An unknown name would silently allow nothing.
          const ids = (body.allowed_models ?? []).map((name, i) => {
            const resolved = resolveModel(catalog, name);
            if (!resolved) throw gatewayError('invalid_request', `allowed_models[${i}]: ${JSON.stringify(name)} is not a model of the catalog in force`);
            return resolved.model.id;
          });
          next.allowed_models = [...new Set(ids)];
        }
        if (body.expires_at !== undefined) {
          if (body.expires_at === null) next.expires_at = null;
          else {
            const parsed = z.iso.datetime({ offset: true }).safeParse(body.expires_at);
            const ms = parsed.success ? Date.parse(body.expires_at) : Number.NaN;
            if (!Number.isSafeInteger(ms) || ms < 0 || ms > Date.UTC(2299, 11, 31)) {
              throw gatewayError('invalid_request', `expires_at: must be an RFC 3339 date-time between 1970 and 2299 (e.g. 2027-01-31T00:00:00Z), or null`);
            }
            next.expires_at = ms;
          }
        }
        await saveKey(next, fence);
        return keyView(next);
      });
    });

    admin.delete('/admin/v1/keys/:id', async (request) => {
      const { id } = request.params as { id: string };
      return exclusive(`key:${id}`, async (fence) => {
        const current = await deps.keys.key(id);
        if (!current) throw gatewayError('not_found', `key ${id} does not exist`);
        if (current.status === 'revoked') return keyView(current);
        const next: KeyRecord = { ...current, status: 'revoked', revoked_at: Date.now(), version: nextVersion(current.version) };
        await saveKey(next, fence);
        return keyView(next);
      });
    });

    admin.post('/admin/v1/accounts/:id/credits', async (request, reply) => {
      const { id } = request.params as { id: string };
      const body = parse(CreditGrant, request.body);
      await findAccount(id);
      let amount: bigint;
      try {
        amount = parseCredits(body.credits);
      } catch (err) {
        if (err instanceof MoneyError) throw gatewayError('invalid_request', `credits: ${err.message}`);
        throw err;
      }
      if (amount === 0n) throw gatewayError('invalid_request', 'credits: must not be zero');
      // 2^53 − 1 µc: Redis Lua numbers are doubles, so beyond it some stage would round.
      if (amount > MAX_MONEY_MICROS || amount < -MAX_MONEY_MICROS) {
        throw gatewayError('invalid_request', `credits: must be within ±${formatCredits(MAX_MONEY_MICROS)}`);
      }
      // Taking credit away is deliberate: a negative amount needs kind "adjustment" spelled out,
      // so a sign typo in a top-up never silently debits the customer.
      if (amount < 0n && body.kind !== 'adjustment') {
        throw gatewayError('invalid_request', body.kind === undefined
          ? 'kind: a negative amount takes credit away and needs kind "adjustment"'
          : `credits: a ${body.kind} must be positive (use kind "adjustment" to take credit away)`);
      }
      const kind = body.kind ?? 'grant';
      const eventId = `credit:${id}:${body.reference}`;
      /**
       * The ledger quarantined the event instead of applying it: the store checks the bound in the
       * same atomic step as the credit (this process's check above races with other control
       * processes), so the refusal is final, and the reference stays refused (one event id, one
       * decision: the warehouse keeps ledger rows as facts keyed by event id).
       */
      const refused = async () => {
        const reason = await deps.balances.quarantineReason(eventId, id);
        if (reason === undefined) return;
        if (reason.startsWith('balance_out_of_range')) throw balanceOutOfRange();
        throw gatewayError('internal_error', `credits: the ledger could not apply this entry and set it aside: ${reason}`);
      };
      // A reference names one entry: the same amount and kind again is a retry (duplicate), any
      // other is a conflict. An entry stored before kinds were kept has no kind to compare.
      const sameEntry = (e: LedgerEntry) => e.amount === amount && (e.kind === undefined || e.kind === kind);
      const conflict = (e: LedgerEntry) => gatewayError('conflict',
        `reference ${body.reference} was already used for ${formatCredits(e.amount)} credits${e.kind === undefined ? '' : ` (kind ${e.kind})`}`);
      /**
       * Waits for the ledger (so the balance shown includes the entry), then checks that the
       * entry it applied under this id is this request's: a 201 or a duplicate is never said
       * of another entry, whatever reached the log first.
       */
      const settled = async (): Promise<boolean> => {
        // With the log away (Kafka down) the ledger cannot apply the entry before it returns: one
        // look, then 202 pending at once, rather than after applyTimeoutMs (a client's timeout).
        const applied = await deps.balances.waitApplied(eventId, deps.log.reachable?.() === false ? 0 : applyTimeoutMs, id);
        if (!applied) {
          await refused();
          return false;
        }
        const entry = await deps.balances.ledgerEntry(eventId, id);
        if (entry !== undefined && !sameEntry(entry)) throw conflict(entry);
        return true;
      };
      const duplicate = async (previous: LedgerEntry) => {
        if (!sameEntry(previous)) throw conflict(previous);
        const applied = await settled();
        const view = await accountView(await findAccount(id));
        return reply.code(applied ? 200 : 202).send({ ...view, reference: body.reference, duplicate: true, pending: !applied });
      };
      const previous = await deps.balances.ledgerEntry(eventId, id);
      if (previous !== undefined) return duplicate(previous);
      const { balance } = await deps.balances.get(id);
      const after = balance + amount;
      // A fast answer for the plain case; the ledger's atomic check is what holds under races.
      if (after > MAX_MONEY_MICROS || after < -MAX_MONEY_MICROS) throw balanceOutOfRange();
      // One atomic claim per reference: of many concurrent requests exactly one publishes; the
      // others wait for the ledger and answer `duplicate: true`. A claimant that dies before
      // publishing blocks the reference only until its claim lapses.
      recordable();
      const claim = await deps.balances.claimReference(eventId, { amount, kind }, claimTtlMs, id);
      if (!claim.claimed && 'refused' in claim) {
        throw gatewayError('conflict', `reference ${body.reference} was refused by the ledger (${claim.refused.split(':')[0]}); a new grant needs a new reference`);
      }
      if (!claim.claimed) return duplicate(claim.entry);
      const event: LedgerEvent = {
        type: 'ledger', event_id: eventId, ts: Date.now(), account_id: id, kind,
        amount_micros: amount.toString(), reference: body.reference,
      };
      try {
        await deps.log.publish('ledger', [{ event }]);
      } catch (err) {
        // Certainly not published: the reference is free again at once. Otherwise the event may
        // still reach the log (a spooled event is sent at the next start), so the claim stays.
        if (err instanceof NotPublishedError) {
          await deps.balances.releaseReference(eventId, id).catch(() => {});
          throw eventsUnwritable(err);
        }
        await deps.balances.keepReference(eventId, id).catch(() => {});
        throw err;
      }
      // From here the event is in the log: the claim must outlive it until the ledger decides,
      // or another entry could claim the reference and publish under the same event id.
      await deps.balances.keepReference(eventId, id);
      const applied = await settled();
      const view = await accountView(await findAccount(id));
      return reply.code(applied ? 201 : 202).send({ ...view, reference: body.reference, duplicate: false, pending: !applied });
    });
  });
}

export function buildControl(deps: ControlDeps & { logger?: object | boolean }): FastifyInstance {
  const app = createHttpServer({ logger: deps.logger ?? false, bodyLimitBytes: 1024 * 1024 });
  registerControl(app, deps);
  return app;
}
