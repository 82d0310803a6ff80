// Requested model name → catalog entry. Runs once per request on the hot path, so every name a
// client can spell exactly (ids, aliases, their `-thinking` forms) is precomputed into one Map
// when the catalog is loaded, with the answer object itself: an exact hit allocates nothing.
// Only `<name>/<provider>` suffixes and glob mapping rules do work per request.

import type { Catalog, CatalogModel } from './catalog.ts';

/** How a requested name was resolved. */
export type ResolvedVia = 'id' | 'alias' | 'thinking' | 'provider' | 'mapping';

export interface ResolvedModel {
  /** the name the client sent */
  readonly requested: string;
  readonly model: CatalogModel;
  /** the model name to send upstream */
  readonly upstreamModel: string;
  /** the client asked for a `-thinking` variant: the gateway turns extended thinking on */
  readonly thinking: boolean;
  readonly via: ResolvedVia;
}

/** One entry of GET /v1/models, in Anthropic's shape. */
export interface ModelInfo {
  readonly type: 'model';
  readonly id: string;
  readonly display_name: string;
  readonly created_at: string;
  /** the model's context window in tokens (catalog `context_window`, without betas) */
  readonly max_input_tokens: number;
  /** the most `max_tokens` a request may ask for (catalog `max_output_tokens`, without betas); null: not given */
  readonly max_tokens: number | null;
}

export interface ListModelsOptions {
  /** also list `<id>-thinking` for models with a thinking variant (default true) */
  readonly includeThinkingVariants?: boolean;
}

const THINKING_SUFFIX = '-thinking';

/**
 * Only names that look like model ids are mapped, and only up to 256 characters: a glob such
 * as `claude-opus-*` must not turn `claude-opus-x/` or a megabyte of junk into a billable model,
 * and the length bounds the matching work a client can trigger.
 */
const MAPPABLE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,255}$/;

/** A `<name>/<provider>` suffix: a short provider token (`bedrock`, `vertex-ai`, `my.corp`). */
const PROVIDER_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

interface CompiledRule {
  readonly match: string;
  readonly target: ResolvedModel;
}

export interface CatalogIndex {
  readonly exact: ReadonlyMap<string, ResolvedModel>;
  readonly rules: readonly CompiledRule[];
}

const indexes = new WeakMap<Catalog, CatalogIndex>();

/**
 * Builds the lookup tables, appending a `path: message` to `problems` for every duplicate name
 * (ids, aliases and generated `-thinking` names share one namespace) and every mapping target
 * that does not resolve.
 */
export function buildIndex(catalog: Catalog, problems: string[]): CatalogIndex {
  const exact = new Map<string, ResolvedModel>();
  const ownerOf = new Map<string, string>();

  const add = (name: string, path: string, generated: boolean, entry: ResolvedModel): void => {
    const owner = ownerOf.get(name);
    if (owner !== undefined) {
      problems.push(
        generated
          ? `${path}: generated name "${name}" is already used by ${owner}`
          : `${path}: "${name}" is already used by ${owner}`,
      );
      return;
    }
    ownerOf.set(name, generated ? `the thinking variant of ${path.replace(/\.thinking_variant$/, '')}` : path);
    exact.set(name, entry);
  };

  catalog.models.forEach((model, i) => {
    const hit = (requested: string, via: ResolvedVia, thinking: boolean): ResolvedModel =>
      Object.freeze({ requested, model, upstreamModel: model.upstreamModel, thinking, via });
    add(model.id, `models[${i}].id`, false, hit(model.id, 'id', false));
    model.aliases.forEach((alias, j) => {
      add(alias, `models[${i}].aliases[${j}]`, false, hit(alias, 'alias', false));
    });
  });
  // Generated names after all real ones, so a collision is reported against the real name.
  catalog.models.forEach((model, i) => {
    if (!model.thinkingVariant) return;
    for (const name of [model.id, ...model.aliases]) {
      const thinkingName = name + THINKING_SUFFIX;
      add(thinkingName, `models[${i}].thinking_variant`, true, Object.freeze({
        requested: thinkingName,
        model,
        upstreamModel: model.upstreamModel,
        thinking: true,
        via: 'thinking' as const,
      }));
    }
  });

  const rules: CompiledRule[] = [];
  catalog.mapping.rules.forEach((rule, i) => {
    const target = exact.get(rule.target);
    if (target === undefined) {
      problems.push(`mapping.rules[${i}].target: "${rule.target}" is not a model id, alias or thinking variant in this catalog`);
      return;
    }
    rules.push({ match: rule.match, target });
  });

  return { exact, rules };
}

/** Attaches a built index to its catalog (done once by parseCatalog). */
export function indexCatalog(catalog: Catalog, index: CatalogIndex): void {
  indexes.set(catalog, index);
}

function indexFor(catalog: Catalog): CatalogIndex {
  let index = indexes.get(catalog);
  if (index === undefined) {
    // A Catalog built by hand rather than by parseCatalog: index it now, once.
    const problems: string[] = [];
    index = buildIndex(catalog, problems);
    if (problems.length > 0) throw new Error(`catalog ${catalog.source}: ${problems.join('; ')}`);
    indexes.set(catalog, index);
  }
  return index;
}

function providerMatches(model: CatalogModel, provider: string): boolean {
  return model.provider === undefined || model.provider === provider;
}

/**
 * Resolves a requested model name, or returns undefined (→ 404 not_found_error). Order:
 * 1. exact id, 2. alias, 3. `<name>-thinking` for a model with a thinking variant
 *    (all three are one Map lookup),
 * 4. `<name>/<provider>`: the part before the last `/` resolved by 1–3; a model that declares
 *    `provider` matches only that provider,
 * 5. mapping rules in file order (only when enabled), over the name without its provider
 *    suffix (letters, digits and `.:@-` only): first with `-thinking` stripped (→ thinking,
 *    if the target has a thinking variant), then the name as is; a declared provider must
 *    still match the suffix.
 */
export function resolveModel(catalog: Catalog, requested: string): ResolvedModel | undefined {
  const index = indexFor(catalog);
  const hit = index.exact.get(requested);
  if (hit !== undefined) return hit;

  let name = requested;
  let provider: string | undefined;
  const slash = requested.lastIndexOf('/');
  if (slash > 0 && slash < requested.length - 1) {
    name = requested.slice(0, slash);
    provider = requested.slice(slash + 1);
    // The suffix is stored verbatim with the usage (as part of the requested name): only a
    // short provider-like token is accepted, never arbitrary text.
    if (!PROVIDER_RE.test(provider)) return undefined;
    const base = index.exact.get(name);
    if (base !== undefined) {
      if (!providerMatches(base.model, provider)) return undefined;
      return { requested, model: base.model, upstreamModel: base.upstreamModel, thinking: base.thinking, via: 'provider' };
    }
  }

  if (!catalog.mapping.enabled || !MAPPABLE_NAME_RE.test(name)) return undefined;
  const mapped = applyMapping(index, name);
  if (mapped === undefined) return undefined;
  if (provider !== undefined && !providerMatches(mapped.model, provider)) return undefined;
  return { requested, model: mapped.model, upstreamModel: mapped.upstreamModel, thinking: mapped.thinking, via: 'mapping' };
}

function applyMapping(index: CatalogIndex, name: string): ResolvedModel | undefined {
  if (name.endsWith(THINKING_SUFFIX)) {
    const base = matchRules(index, name.slice(0, -THINKING_SUFFIX.length));
    if (base !== undefined && base.model.thinkingVariant) return { ...base, thinking: true };
  }
  return matchRules(index, name);
}

function matchRules(index: CatalogIndex, name: string): ResolvedModel | undefined {
  for (const rule of index.rules) {
    if (globMatch(rule.match, name)) return rule.target;
  }
  return undefined;
}

/**
 * `*` matches any run of characters (including none); everything else is literal.
 * Iterative with backtracking to the last `*` only: O(pattern × name) at worst, no regex.
 */
export function globMatch(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let resume = 0;
  while (n < name.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      resume = n;
    } else if (p < pattern.length && pattern[p] === name[n]) {
      p++;
      n++;
    } else if (star !== -1) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * The catalog model that is exactly the model `name` (e.g. a group's mapped upstream model): by
 * id, alias, `-thinking` or `/provider` name (`resolveModel` steps 1–4), else by its
 * `upstream_model`; never through a mapping rule's glob, which says what a name is sold as, not
 * what it is (`claude-opus-*` would make Opus 4.1 the model the rule serves it as). Undefined
 * when none is.
 */
export function exactModel(catalog: Catalog, name: string): CatalogModel | undefined {
  const hit = resolveModel(catalog, name);
  if (hit !== undefined && hit.via !== 'mapping') return hit.model;
  return catalog.models.find((m) => m.upstreamModel === name);
}

/** The public model list for GET /v1/models, in catalog order (aliases are not listed). */
export function listModels(catalog: Catalog, options: ListModelsOptions = {}): ModelInfo[] {
  const includeThinking = options.includeThinkingVariants ?? true;
  const out: ModelInfo[] = [];
  for (const m of catalog.models) {
    const limits = { max_input_tokens: m.contextWindow, max_tokens: m.maxOutputTokens ?? null };
    out.push({ type: 'model', id: m.id, display_name: m.displayName, created_at: m.createdAt, ...limits });
    if (includeThinking && m.thinkingVariant) {
      out.push({
        type: 'model',
        id: m.id + THINKING_SUFFIX,
        display_name: `${m.displayName} (thinking)`,
        created_at: m.createdAt,
        ...limits,
      });
    }
  }
  return out;
}
