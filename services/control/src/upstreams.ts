// `/admin/v1/upstreams` and `/admin/v1/groups` (issue 10, outcome 1): the upstream accounts a
// reseller buys from and the groups that pool them, as data. Admin token only (the finance token
// gets 403): an upstream holds the operator's own credential. Every change goes to the warehouse
// first (durable), then to the hot store every gateway reads through a ≤ 1 s snapshot.

import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { gatewayError } from '@tollgate/anthropic';
import { ownRecord } from '@tollgate/events';
import { guardOperatorRoutes, lenientDecode, looksLikeCredential } from '@tollgate/http';
import { seal } from '@tollgate/keys';
import {
  aggregateHealth, configuredGroup, configuredUpstream, DEFAULT_ID, PoolBusyError, saveGroup, saveUpstream, UPSTREAM_KEY_PURPOSE,
  type ConfiguredUpstream, type GroupRecord, type Platform, type PoolStore, type UpstreamRecord,
} from '@tollgate/pool';
import { resolveModel, type Catalog } from '@tollgate/pricing';
import type { Warehouse } from '@tollgate/warehouse';
import { bodyErrorMap, fieldPath, MAX_NAME_CHARS, operatorTextProblem } from './body-problems.ts';
import { newId, nextVersion } from './ids.ts';

/** Bounds of the fields (README, "Upstream pools"). */
export const UPSTREAM_LIMITS = {
  urlChars: 2048, nameChars: MAX_NAME_CHARS, apiKeyChars: 4096, weight: [1, 1000], priority: [-1000, 1000],
  maxConcurrency: [1, 100_000], models: 64, groupUpstreams: 100, mappingEntries: 64, mappedNameChars: 200,
} as const;

export interface UpstreamRouteDeps {
  adminToken: string;
  /** FINANCE_TOKEN: refused on these routes (403), as on every admin-only route */
  financeToken?: string;
  /** the hot store gateways read (memory embedded, Redis distributed) */
  store: PoolStore;
  /** KEY_HASH_SECRET: upstream credentials are sealed under it, never stored in clear */
  keyHashSecret: string;
  /** the durable copy (migration 10), reloaded into `store` after a restart or a Redis loss */
  warehouse?: Warehouse;
  /** the catalog in force: `models` and `model_mapping` keys must be its model ids (or aliases) */
  catalog: () => Catalog;
  /** UPSTREAM_URL / UPSTREAM_API_KEY: the upstream `default` and the default group when none is stored */
  configured: ConfiguredUpstream;
  /** told after every change (this process's own pool view reads again at once) */
  onChange?: () => void;
}

function bad(field: string, message: string): never {
  throw gatewayError('invalid_request', `${field}: ${message}`);
}

/** The first problem of a zod parse as `field: message`, unknown fields named as such. */
function parseBody<T>(schema: z.ZodType<T>, body: unknown, shape: string): T {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) bad('body', `must be a JSON object ${shape}`);
  const r = schema.safeParse(body, { error: bodyErrorMap });
  if (!r.success) {
    const i = r.error.issues[0]!;
    if (i.code === 'unrecognized_keys') bad(i.keys.join(', '), `unknown field (expected ${shape})`);
    bad(fieldPath(i.path), i.message);
  }
  return r.data;
}

/**
 * What is wrong with a name or an upstream model name, or undefined: well-formed text without
 * control characters, U+2028/9 or bidi controls, 1 … `max` characters once trimmed. The operator
 * CLI checks its values with it before sending them.
 */
export function boundedTextProblem(value: string, max: number): string | undefined {
  return operatorTextProblem(value, max) ?? (value.trim().length === 0 ? 'must not be empty' : undefined);
}

/** Visible ASCII, no spaces: what goes in a header (an api key) or on the wire and back (a model name). */
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

/** Names and upstream model names (`boundedTextProblem`), trimmed. @throws GatewayError 400 naming `field` */
function boundedText(field: string, value: string, max: number): string {
  const problem = boundedTextProblem(value, max);
  if (problem) bad(field, problem);
  return value.trim();
}

/**
 * What is wrong with a model_mapping target (the model name sent to the group's upstreams), or
 * undefined: a name (`boundedTextProblem`, ≤ 200) of printable ASCII without spaces. The
 * upstream reports the model it served, i.e. this name, and metering reads back only a wire
 * model name (`wireLabel`: printable ASCII): another name made every answer a usage anomaly with
 * no served model (a tester's case).
 */
export function mappedNameProblem(value: string): string | undefined {
  const problem = boundedTextProblem(value, UPSTREAM_LIMITS.mappedNameChars);
  if (problem) return problem;
  const name = value.trim();
  if (!VISIBLE_ASCII.test(name)) return `${JSON.stringify(name.slice(0, 200))} must be printable ASCII without spaces (an upstream model name, read back from the upstream's answers)`;
  return undefined;
}

/**
 * `value` parsed as an absolute http(s) URL (webhook URLs too, in ./webhooks.ts).
 * @throws GatewayError 400 naming `field`, with `example` as what an absolute URL looks like
 */
export function httpUrlField(field: string, value: string, example: string): URL {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    bad(field, `must be an absolute URL such as ${example}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') bad(field, `scheme must be http or https, not ${JSON.stringify(u.protocol.slice(0, -1))}`);
  return u;
}

/**
 * An upstream base URL: absolute http(s), ≤ 2,048 characters, no user name or password, no
 * query or fragment (the gateway appends `/v1/messages` or `/v1/chat/completions`), no
 * credential in its path (the URL is shown and logged; the key goes in `api_key`). Returned
 * without a trailing slash.
 * @throws GatewayError 400 naming `base_url`
 */
export function upstreamBaseUrl(value: string): string {
  if (value.length > UPSTREAM_LIMITS.urlChars) bad('base_url', `must be at most ${UPSTREAM_LIMITS.urlChars} characters`);
  const u = httpUrlField('base_url', value, 'https://api.anthropic.com');
  if (u.username !== '' || u.password !== '') bad('base_url', 'must not carry a user name or password; give the credential as api_key');
  if (u.search !== '' || value.includes('?')) bad('base_url', 'must not have a query string');
  if (u.hash !== '' || value.includes('#')) bad('base_url', 'must not have a fragment');
  if (u.pathname.split('/').some((seg) => looksLikeCredential(lenientDecode(seg)))) bad('base_url', 'must not carry a credential in its path; give it as api_key');
  return u.href.replace(/\/+$/, '');
}

/**
 * What is wrong with an upstream credential, or undefined: it goes into a request header, so
 * visible ASCII only, 1 … 4,096 characters. The message never quotes the value.
 */
export function apiKeyProblem(value: string): string | undefined {
  if (value.length === 0 || value.length > UPSTREAM_LIMITS.apiKeyChars) return `must be 1 to ${UPSTREAM_LIMITS.apiKeyChars} characters`;
  if (!VISIBLE_ASCII.test(value)) return 'must be visible ASCII characters without spaces (it is sent as a header value)';
  return undefined;
}

/** `apiKeyProblem` as a 400 naming `api_key`. */
function apiKeyField(value: string): string {
  const problem = apiKeyProblem(value);
  if (problem) bad('api_key', problem);
  return value;
}

const int = (field: string, [min, max]: readonly [number, number]) =>
  z.number({ error: `must be a whole number from ${min} to ${max}` }).int(`must be a whole number from ${min} to ${max}`)
    .min(min, `must be a whole number from ${min} to ${max}`).max(max, `must be a whole number from ${min} to ${max}`).describe(field);

const UpstreamFields = {
  name: z.string(),
  base_url: z.string(),
  api_key: z.string().nullable(),
  models: z.array(z.string()).nullable(),
  weight: int('weight', UPSTREAM_LIMITS.weight),
  priority: int('priority', UPSTREAM_LIMITS.priority),
  max_concurrency: int('max_concurrency', UPSTREAM_LIMITS.maxConcurrency).nullable(),
  status: z.enum(['active', 'disabled']),
};
const UPSTREAM_SHAPE = '{name, platform, base_url, api_key, models?, weight?, priority?, max_concurrency?, status?}';
const UpstreamCreate = z.object({
  ...UpstreamFields,
  platform: z.enum(['anthropic', 'openai']),
  api_key: UpstreamFields.api_key.optional(),
  models: UpstreamFields.models.optional(),
  weight: UpstreamFields.weight.optional(),
  priority: UpstreamFields.priority.optional(),
  max_concurrency: UpstreamFields.max_concurrency.optional(),
  status: UpstreamFields.status.optional(),
}).strict();
const UpstreamPatch = z.object({
  ...Object.fromEntries(Object.entries(UpstreamFields).map(([k, v]) => [k, v.optional()])) as { [K in keyof typeof UpstreamFields]: z.ZodOptional<(typeof UpstreamFields)[K]> },
  /** refused with its own message below: an upstream's protocol is what its groups were checked against */
  platform: z.unknown().optional(),
}).strict();

/**
 * A JSON object of strings whose keys are all kept (`ownRecord`: a record parse would silently
 * drop a `"__proto__"` key, and the request would be answered as if the entry were not there,
 * brk10a #4). Such a key is refused by name first; every other key is then checked against the
 * catalog by `mapping`.
 */
function mappingShape() {
  return ownRecord(z.string(), z.string(), '"__proto__" is not a model of the catalog in force');
}

const GROUP_SHAPE = '{name, platform, upstream_ids, model_mapping?}';
const GroupFields = {
  name: z.string(),
  platform: z.enum(['anthropic', 'openai']),
  upstream_ids: z.array(z.string()),
  model_mapping: mappingShape().nullable(),
};
const GroupCreate = z.object({ ...GroupFields, model_mapping: GroupFields.model_mapping.optional() }).strict();
const GroupPatch = z.object(
  Object.fromEntries(Object.entries(GroupFields).map(([k, v]) => [k, v.optional()])) as { [K in keyof typeof GroupFields]: z.ZodOptional<(typeof GroupFields)[K]> },
).strict();

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * `POST /admin/v1/upstreams` → 201 upstream; `GET /admin/v1/upstreams` → `{data}` (the configured
 * `default` first, then by creation) with each one's health; `GET`/`PATCH`/`DELETE
 * /admin/v1/upstreams/:id` (DELETE: 409 while a group lists it). `POST /admin/v1/groups` → 201
 * group; `GET /admin/v1/groups` (the default group first); `GET`/`PATCH`/`DELETE
 * /admin/v1/groups/:id` (`PATCH /admin/v1/groups/default` replaces the configured default group,
 * `DELETE` of it returns to the configured one). The credential is sealed (purpose
 * `upstream-api-key`, context the id) and never answered: views show `api_key_set`.
 * Bad input: 400 naming the field; unknown or deleted id: 404.
 */
export function registerUpstreams(app: FastifyInstance, deps: UpstreamRouteDeps): void {
  const { store } = deps;
  const configured = () => configuredUpstream(deps.configured);

  /**
   * Runs a check-and-write of pool records under the store's pool lock (`PoolStore.exclusive`):
   * a DELETE of an upstream and a POST/PATCH of a group listing it never both pass (brk10a #3).
   * A lock not had within POOL_LOCK_WAIT_MS answers 503 overloaded.
   */
  const locked = <T>(fn: (fence: () => Promise<void>) => Promise<T>): Promise<T> => store.exclusive(fn).catch((err: unknown) => {
    if (err instanceof PoolBusyError) throw gatewayError('overloaded', err.message, { headers: { 'retry-after': '1' } });
    throw err;
  });
  /** `fence`: the pool lock's (PoolStore.exclusive), called before anything is written; none for a creation outside it. */
  const saveU = async (u: UpstreamRecord, fence?: () => Promise<void>) => {
    await fence?.();
    if (deps.warehouse) await saveUpstream(deps.warehouse, u);
    await store.putUpstream(u);
    deps.onChange?.();
  };
  const saveG = async (g: GroupRecord, fence?: () => Promise<void>) => {
    await fence?.();
    if (deps.warehouse) await saveGroup(deps.warehouse, g);
    await store.putGroup(g);
    deps.onChange?.();
  };

  /** A live upstream: `default` (configured) or a stored one not deleted. */
  const liveUpstream = async (id: string): Promise<UpstreamRecord | undefined> => {
    if (id === DEFAULT_ID) return configured();
    const u = await store.upstream(id);
    return u && !u.deleted ? u : undefined;
  };
  const findUpstream = async (id: string) => {
    const u = await liveUpstream(id);
    if (!u) throw gatewayError('not_found', `upstream ${id} does not exist`);
    return u;
  };
  /** Live groups, the default one (stored, else configured) included. */
  const liveGroups = async (): Promise<GroupRecord[]> => {
    const all = (await store.groups()).filter((g) => !g.deleted);
    if (!all.some((g) => g.id === DEFAULT_ID)) all.push(configuredGroup());
    return all;
  };
  const findGroup = async (id: string): Promise<GroupRecord> => {
    const g = await store.group(id);
    if (g && !g.deleted) return g;
    if (id === DEFAULT_ID) return configuredGroup();
    throw gatewayError('not_found', `group ${id} does not exist`);
  };

  const models = (value: string[] | null | undefined): string[] | null | undefined => {
    if (value === undefined || value === null) return value;
    if (value.length === 0) bad('models', 'must name at least one model, or be null for every model');
    if (value.length > UPSTREAM_LIMITS.models) bad('models', `must name at most ${UPSTREAM_LIMITS.models} models`);
    const catalog = deps.catalog();
    // Stored as catalog ids: the selection compares the id a request's model resolves to.
    const ids = value.map((name, i) => {
      const resolved = resolveModel(catalog, name);
      if (!resolved) bad(`models[${i}]`, `${JSON.stringify(name.slice(0, 200))} is not a model of the catalog in force`);
      return resolved.model.id;
    });
    return [...new Set(ids)];
  };

  const upstreamView = async (u: UpstreamRecord, groups: readonly GroupRecord[]) => {
    const h = aggregateHealth(await store.health(u.id));
    return {
      id: u.id, name: u.name, platform: u.platform, base_url: u.base_url,
      api_key_set: u.id === DEFAULT_ID ? deps.configured.apiKey !== undefined && deps.configured.apiKey !== '' : u.api_key_sealed !== null,
      models: u.models, weight: u.weight, priority: u.priority, max_concurrency: u.max_concurrency, status: u.status,
      source: u.id === DEFAULT_ID ? 'config' : 'stored',
      groups: groups.filter((g) => g.upstream_ids.includes(u.id)).map((g) => g.id),
      created_at: u.id === DEFAULT_ID ? null : iso(u.created_at),
      health: { ...h, cooldown_until: iso(h.cooldown_until), reported_at: iso(h.reported_at) },
    };
  };
  const groupView = (g: GroupRecord) => ({
    id: g.id, name: g.name, platform: g.platform, upstream_ids: g.upstream_ids, model_mapping: g.model_mapping,
    source: g.version === 0 ? 'config' : 'stored', created_at: g.version === 0 ? null : iso(g.created_at),
  });

  /**
   * The group's upstream ids, each a live upstream of the group's platform, at most 100, no
   * repeats; disabled upstreams may be listed (they serve again when enabled).
   */
  const members = async (ids: string[], platform: Platform): Promise<string[]> => {
    if (ids.length === 0) bad('upstream_ids', 'must list at least one upstream');
    if (ids.length > UPSTREAM_LIMITS.groupUpstreams) bad('upstream_ids', `must list at most ${UPSTREAM_LIMITS.groupUpstreams} upstreams`);
    const seen = new Set<string>();
    for (const [i, id] of ids.entries()) {
      if (seen.has(id)) bad(`upstream_ids[${i}]`, `${JSON.stringify(id.slice(0, 200))} is listed twice`);
      seen.add(id);
      const u = id.length <= 200 ? await liveUpstream(id) : undefined;
      if (!u) bad(`upstream_ids[${i}]`, `${JSON.stringify(id.slice(0, 200))} is not an upstream (GET /admin/v1/upstreams lists them)`);
      if (u.platform !== platform) bad(`upstream_ids[${i}]`, `upstream ${id} speaks ${u.platform}; every upstream of a group has the group's platform (${platform})`);
    }
    return ids;
  };

  /** Catalog model id (alias resolved) → upstream model name, at most 64 entries; null clears. */
  const mapping = (value: Record<string, string> | null | undefined): Record<string, string> | null | undefined => {
    if (value === undefined || value === null) return value;
    const entries = Object.entries(value);
    if (entries.length > UPSTREAM_LIMITS.mappingEntries) bad('model_mapping', `must have at most ${UPSTREAM_LIMITS.mappingEntries} entries`);
    const catalog = deps.catalog();
    const out: Record<string, string> = {};
    for (const [from, to] of entries) {
      const field = fieldPath(['model_mapping', from]);
      const resolved = resolveModel(catalog, from);
      if (!resolved) bad(field, `${JSON.stringify(from.slice(0, 200))} is not a model of the catalog in force`);
      if (Object.hasOwn(out, resolved.model.id)) bad(field, `maps ${resolved.model.id} a second time`);
      const problem = mappedNameProblem(to);
      if (problem) bad(field, problem);
      out[resolved.model.id] = to.trim();
    }
    return entries.length === 0 ? null : out;
  };

  app.register(async (s) => {
    guardOperatorRoutes(s, { adminToken: deps.adminToken, financeToken: deps.financeToken });

    s.post('/admin/v1/upstreams', async (request, reply) => {
      const body = parseBody(UpstreamCreate, request.body, UPSTREAM_SHAPE);
      const id = newId('up');
      const record: UpstreamRecord = {
        id, name: boundedText('name', body.name, UPSTREAM_LIMITS.nameChars), platform: body.platform,
        base_url: upstreamBaseUrl(body.base_url),
        api_key_sealed: body.api_key === undefined || body.api_key === null ? null : seal(apiKeyField(body.api_key), deps.keyHashSecret, UPSTREAM_KEY_PURPOSE, id),
        models: models(body.models) ?? null, weight: body.weight ?? 1, priority: body.priority ?? 0,
        max_concurrency: body.max_concurrency ?? null, status: body.status ?? 'active',
        created_at: Date.now(), deleted: false, version: nextVersion(undefined),
      };
      await saveU(record);
      return reply.code(201).send(await upstreamView(record, []));
    });

    s.get('/admin/v1/upstreams', async () => {
      const stored = (await store.upstreams()).filter((u) => !u.deleted && u.id !== DEFAULT_ID)
        .sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
      const groups = await liveGroups();
      return { data: await Promise.all([configured(), ...stored].map((u) => upstreamView(u, groups))) };
    });

    s.get('/admin/v1/upstreams/:id', async (request) => {
      const u = await findUpstream((request.params as { id: string }).id);
      return upstreamView(u, await liveGroups());
    });

    s.patch('/admin/v1/upstreams/:id', async (request) => {
      const { id } = request.params as { id: string };
      const body = parseBody(UpstreamPatch, request.body, '{name?, base_url?, api_key?, models?, weight?, priority?, max_concurrency?, status?}');
      return locked(async (fence) => {
      const current = await findUpstream(id);
      if (id === DEFAULT_ID) throw gatewayError('conflict', 'upstream default is configured by UPSTREAM_URL / UPSTREAM_API_KEY; change the configuration, or replace the default group (PATCH /admin/v1/groups/default)');
      if (body.platform !== undefined) bad('platform', 'cannot be changed (groups were checked against it); create a new upstream instead');
      const next: UpstreamRecord = { ...current, version: nextVersion(current.version) };
      if (body.name !== undefined) next.name = boundedText('name', body.name, UPSTREAM_LIMITS.nameChars);
      if (body.base_url !== undefined) next.base_url = upstreamBaseUrl(body.base_url);
      if (body.api_key !== undefined) next.api_key_sealed = body.api_key === null ? null : seal(apiKeyField(body.api_key), deps.keyHashSecret, UPSTREAM_KEY_PURPOSE, id);
      if (body.models !== undefined) next.models = models(body.models) ?? null;
      if (body.weight !== undefined) next.weight = body.weight;
      if (body.priority !== undefined) next.priority = body.priority;
      if (body.max_concurrency !== undefined) next.max_concurrency = body.max_concurrency;
      if (body.status !== undefined) next.status = body.status;
      await saveU(next, fence);
      return upstreamView(next, await liveGroups());
      });
    });

    s.delete('/admin/v1/upstreams/:id', async (request) => locked(async (fence) => {
      const { id } = request.params as { id: string };
      const current = await findUpstream(id);
      if (id === DEFAULT_ID) throw gatewayError('conflict', 'upstream default is configured by UPSTREAM_URL / UPSTREAM_API_KEY and cannot be deleted');
      // Refused rather than silently shrinking a group: the operator decides where its traffic goes.
      const users = (await liveGroups()).filter((g) => g.upstream_ids.includes(id)).map((g) => g.id);
      if (users.length > 0) throw gatewayError('conflict', `upstream ${id} is in group${users.length > 1 ? 's' : ''} ${users.join(', ')}; remove it from ${users.length > 1 ? 'them' : 'it'} first (PATCH /admin/v1/groups/:id {upstream_ids})`);
      await saveU({ ...current, deleted: true, version: nextVersion(current.version) }, fence);
      return { id, deleted: true };
    }));

    s.post('/admin/v1/groups', async (request, reply) => {
      const body = parseBody(GroupCreate, request.body, GROUP_SHAPE);
      return locked(async (fence) => {
      const record: GroupRecord = {
        id: newId('grp'), name: boundedText('name', body.name, UPSTREAM_LIMITS.nameChars), platform: body.platform,
        upstream_ids: await members(body.upstream_ids, body.platform), model_mapping: mapping(body.model_mapping) ?? null,
        created_at: Date.now(), deleted: false, version: nextVersion(undefined),
      };
      await saveG(record, fence);
      return reply.code(201).send(groupView(record));
      });
    });

    s.get('/admin/v1/groups', async () => {
      const all = (await liveGroups()).sort((a, b) => Number(b.id === DEFAULT_ID) - Number(a.id === DEFAULT_ID)
        || a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
      return { data: all.map(groupView) };
    });

    s.get('/admin/v1/groups/:id', async (request) => groupView(await findGroup((request.params as { id: string }).id)));

    s.patch('/admin/v1/groups/:id', async (request) => {
      const { id } = request.params as { id: string };
      const body = parseBody(GroupPatch, request.body, '{name?, platform?, upstream_ids?, model_mapping?}');
      return locked(async (fence) => {
      const current = await findGroup(id);
      // The configured default becomes a stored group at its first change (a tombstone's version counts).
      const stored = await store.group(id);
      const next: GroupRecord = {
        ...current, created_at: current.version === 0 ? Date.now() : current.created_at,
        version: nextVersion(Math.max(current.version, stored?.version ?? 0)),
      };
      if (body.name !== undefined) next.name = boundedText('name', body.name, UPSTREAM_LIMITS.nameChars);
      if (body.platform !== undefined) next.platform = body.platform;
      if (body.model_mapping !== undefined) next.model_mapping = mapping(body.model_mapping) ?? null;
      if (body.upstream_ids !== undefined || body.platform !== undefined) {
        try {
          next.upstream_ids = await members(body.upstream_ids ?? next.upstream_ids, next.platform);
        } catch (err) {
          // A platform change against the group's current upstreams: say so under `platform`.
          if (body.upstream_ids === undefined) bad('platform', `the group's upstreams do not all speak ${next.platform}; give upstream_ids of that platform with it`);
          throw err;
        }
      }
      await saveG(next, fence);
      return groupView(next);
      });
    });

    s.delete('/admin/v1/groups/:id', async (request) => locked(async (fence) => {
      const { id } = request.params as { id: string };
      const current = await findGroup(id);
      if (current.version === 0) throw gatewayError('conflict', 'the default group is the configured one (UPSTREAM_URL); there is no stored group to delete');
      // Accounts and keys naming a deleted group fall through to the next level (key → account →
      // default), as with a deleted plan; the default returns to the configured one.
      await saveG({ ...current, deleted: true, version: nextVersion(current.version) }, fence);
      return { id, deleted: true };
    }));
  });
}
