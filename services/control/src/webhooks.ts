// `/admin/v1/webhooks` (issue 9, outcome 6): endpoints an operator registers for alerts
// (`balance.low`, `spend_limit.reached`, `plan_window.exhausted`, `event.quarantined`).
// Admin token only: a webhook receives account data and its secret signs on our behalf, so the
// read-only finance token may not see or change them.

import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { gatewayError } from '@tollgate/anthropic';
import { credentialInUrl, guardOperatorRoutes, parseIntParam, queryParam } from '@tollgate/http';
import { seal } from '@tollgate/keys';
import type { Warehouse } from '@tollgate/warehouse';
import {
  DELIVERIES_KEPT, newWebhookSecret, saveWebhook, WEBHOOK_EVENT_TYPES, WEBHOOK_SECRET_PURPOSE,
  type DeliveryRecord, type WebhookRecord, type WebhookStore,
} from '@tollgate/webhooks';
import { bodyErrorMap, fieldPath, operatorTextProblem } from './body-problems.ts';
import { newId, nextVersion } from './ids.ts';
import { httpUrlField } from './upstreams.ts';

/** The longest webhook URL accepted, characters (what browsers and most servers take). */
export const MAX_WEBHOOK_URL_CHARS = 2048;

export interface WebhookRouteDeps {
  adminToken: string;
  /** FINANCE_TOKEN: refused on these routes (403), as on every admin-only route */
  financeToken?: string;
  /** the hot store every dispatcher reads (memory embedded, Redis distributed) */
  store: WebhookStore;
  /** KEY_HASH_SECRET: signing secrets are sealed under it, never stored in clear */
  keyHashSecret: string;
  /** the durable copy (migration 9), reloaded into `store` after a restart or a Redis loss */
  warehouse?: Warehouse;
  /** this process's own credentials (admin/finance tokens, …): refused inside a URL */
  secrets?: readonly string[];
}

const Create = z.object({
  url: z.string(),
  events: z.array(z.string()),
  description: z.string().nullable().optional(),
}).strict();

function bad(field: string, message: string): never {
  throw gatewayError('invalid_request', `${field}: ${message}`);
}

/** What each part `credentialInUrl` names is called in the message. */
const PART_NAMES = {
  'user info': 'user name or password', query: 'query', path: 'path', 'path parameter': 'path parameters (;name=value)', fragment: 'fragment (#…)',
} as const;

/** Characters a webhook's description may have (README, Webhooks). */
export const MAX_WEBHOOK_DESCRIPTION_CHARS = 500;

/**
 * The URL a webhook may post to: absolute http(s), no tab, line break or other control
 * character and no leading or trailing space anywhere in it (the URL parser would silently
 * drop them, so what is stored would not be what was typed), a port other than 0, at most
 * MAX_WEBHOOK_URL_CHARS once normalised (the stored, shown and posted-to form), and no
 * credential in any part (`credentialInUrl` of @tollgate/http: user info, query, path
 * segments and `;` parameters, fragment): a URL is logged and shown, a secret is not.
 * @returns the normalised URL (`URL.href`)
 * @throws GatewayError 400 naming `url`
 */
export function webhookUrl(value: string, secrets: readonly string[] = []): string {
  // Checked on the raw text first: an absurd length is refused before parsing it.
  if (value.length > MAX_WEBHOOK_URL_CHARS) bad('url', `must be at most ${MAX_WEBHOOK_URL_CHARS} characters`);
  if (/[\u0000-\u001f\u007f]/.test(value)) bad('url', 'must not contain tabs, line breaks or other control characters');
  if (value.trim() !== value) bad('url', 'must not start or end with spaces');
  const u = httpUrlField('url', value, 'https://hooks.example.com/tollgate');
  if (u.port === '0') bad('url', 'port 0 is not a port a receiver can listen on');
  if (u.href.length > MAX_WEBHOOK_URL_CHARS) bad('url', `must be at most ${MAX_WEBHOOK_URL_CHARS} characters once normalised (${u.href.length}: the parser percent-encodes what needs it)`);
  const part = credentialInUrl(u, secrets);
  if (part === 'user info') bad('url', 'must not carry a user name or password; authenticate the request by its webhook-signature');
  if (part) bad('url', `must not carry a credential (a token, key or secret in its ${PART_NAMES[part]}); authenticate the request by its webhook-signature`);
  return u.href;
}

function parseCreate(body: unknown, secrets: readonly string[]) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) bad('body', 'must be a JSON object {url, events, description?}');
  const r = Create.safeParse(body, { error: bodyErrorMap });
  if (!r.success) {
    const i = r.error.issues[0]!;
    if (i.code === 'unrecognized_keys') bad(i.keys.join(', '), 'unknown field (expected url, events, description)');
    bad(fieldPath(i.path), i.message);
  }
  const url = webhookUrl(r.data.url, secrets);
  const events = r.data.events;
  if (events.length === 0) bad('events', `must name at least one of ${WEBHOOK_EVENT_TYPES.join(', ')}`);
  events.forEach((e, i) => {
    if (!(WEBHOOK_EVENT_TYPES as readonly string[]).includes(e)) bad(`events[${i}]`, `${JSON.stringify(e.slice(0, 100))} is not one of ${WEBHOOK_EVENT_TYPES.join(', ')}`);
  });
  let description: string | null = null;
  if (r.data.description !== undefined && r.data.description !== null) {
    const problem = operatorTextProblem(r.data.description, MAX_WEBHOOK_DESCRIPTION_CHARS);
    if (problem) bad('description', problem);
    description = r.data.description.trim();
  }
  return { url, events: [...new Set(events)] as WebhookRecord['events'], description };
}

/** The API shape of a webhook, never with its secret: `{id, url, events, description, created_at}`. */
export function webhookView(w: WebhookRecord) {
  return { id: w.id, url: w.url, events: w.events, description: w.description, created_at: new Date(w.created_at).toISOString() };
}

/** The API shape of a delivery: times RFC 3339, `delivered_at` null until a 2xx. */
export function deliveryView(d: DeliveryRecord) {
  return {
    id: d.id, event_type: d.event_type, occurrence_id: d.occurrence_id, state: d.state, attempts: d.attempts,
    last_status: d.last_status, last_error: d.last_error, created_at: new Date(d.created_at).toISOString(),
    delivered_at: d.delivered_at === null ? null : new Date(d.delivered_at).toISOString(),
  };
}

/**
 * `POST /admin/v1/webhooks {url, events, description?}` → 201 `{id, url, events, description,
 * secret, created_at}` (the `whsec_…` signing secret shown this once; stored sealed);
 * `GET /admin/v1/webhooks` → `{data: [webhook]}` by creation; `GET /admin/v1/webhooks/:id`;
 * `DELETE /admin/v1/webhooks/:id` → `{id, deleted: true}` (nothing more is sent to it);
 * `GET /admin/v1/webhooks/:id/deliveries?limit=` → `{data: [delivery]}`, newest first (at most
 * DELIVERIES_KEPT). Bad input: 400 naming the field; unknown or deleted id: 404.
 * Every change goes to the warehouse first (durable), then to the hot store.
 */
export function registerWebhooks(app: FastifyInstance, deps: WebhookRouteDeps): void {
  const secrets = deps.secrets ?? [deps.adminToken, ...(deps.financeToken ? [deps.financeToken] : []), deps.keyHashSecret];
  const save = async (w: WebhookRecord) => {
    if (deps.warehouse) await saveWebhook(deps.warehouse, w);
    await deps.store.put(w);
  };
  const find = async (id: string) => {
    const w = await deps.store.get(id);
    if (!w || w.deleted) throw gatewayError('not_found', `webhook ${id} does not exist`);
    return w;
  };

  app.register(async (s) => {
    guardOperatorRoutes(s, { adminToken: deps.adminToken, financeToken: deps.financeToken });

    s.post('/admin/v1/webhooks', async (request, reply) => {
      const body = parseCreate(request.body, secrets);
      const id = newId('wh');
      const secret = newWebhookSecret();
      const record: WebhookRecord = {
        ...body, id, secret_sealed: seal(secret, deps.keyHashSecret, WEBHOOK_SECRET_PURPOSE, id),
        created_at: Date.now(), deleted: false, version: nextVersion(undefined),
      };
      await save(record);
      return reply.code(201).send({ ...webhookView(record), secret });
    });

    s.get('/admin/v1/webhooks', async () => {
      const all = (await deps.store.list()).filter((w) => !w.deleted)
        .sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
      return { data: all.map(webhookView) };
    });

    s.get('/admin/v1/webhooks/:id', async (request) => webhookView(await find((request.params as { id: string }).id)));

    s.delete('/admin/v1/webhooks/:id', async (request) => {
      const current = await find((request.params as { id: string }).id);
      await save({ ...current, deleted: true, version: nextVersion(current.version) });
      return { id: current.id, deleted: true };
    });

    s.get('/admin/v1/webhooks/:id/deliveries', { config: { query: ['limit'] } }, async (request) => {
      const raw = queryParam(request.query, 'limit');
      const limit = raw === undefined ? DELIVERIES_KEPT : parseIntParam(raw, 'limit', 1, DELIVERIES_KEPT);
      const w = await find((request.params as { id: string }).id);
      return { data: (await deps.store.deliveries(w.id, limit)).map(deliveryView) };
    });
  });
}
