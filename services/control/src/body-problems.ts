// How the control plane's JSON bodies are refused: one wording for every admin route's zod
// schema, naming the field and what it must be, instead of zod's defaults ("Invalid input",
// "expected string, received undefined").

import type { z } from 'zod';
import { textProblem } from '@tollgate/events';

/** Bidi controls: U+061C, U+200E/F, U+202A–E (embeddings, overrides), U+2066–9 (isolates). */
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** Characters an operator-given name may have (accounts, keys, plans, upstreams, groups). */
export const MAX_NAME_CHARS = 200;

/**
 * What is wrong with the name of a plan, or undefined: judged once trimmed (the plan routes trim
 * first), not empty, then `operatorTextProblem` up to MAX_NAME_CHARS.
 */
export function planNameProblem(v: string): string | undefined {
  const t = v.trim();
  return t.length === 0 ? 'must not be empty' : operatorTextProblem(t, MAX_NAME_CHARS);
}

/**
 * What is wrong with text an operator stores (a name, a credit reference, a description), or
 * undefined: what every event must hold (`textProblem`: a string, at most `max` characters,
 * well-formed, no control characters), and neither a line or paragraph separator (U+2028/9:
 * line breaks to every log and CSV reader) nor a bidi control (it reorders what an invoice, a
 * CSV cell or a terminal shows: `evil\u202Egnp.exe`).
 */
export function operatorTextProblem(v: unknown, max: number): string | undefined {
  const problem = textProblem(v, max);
  if (problem !== undefined || typeof v !== 'string') return problem;
  if (/[\u2028\u2029]/.test(v)) return 'must not contain line or paragraph separators (U+2028, U+2029)';
  if (BIDI_CONTROLS.test(v)) return 'must not contain bidi control characters (U+061C, U+200E/F, U+202A–E, U+2066–9)';
  return undefined;
}

/** Client text quoted in a message: its first 40 characters, `…` after a cut. */
function cut40(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

/** `a string`, `an array`, … for zod's type names. */
function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

/** The JSON type of a value as a client would name it: `null`, `array`, `object`, `string`, … */
function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** zod's expected type as JSON says it (`int` → `whole number`, `record` → `object`). */
function expectedType(expected: string): string {
  return expected === 'int' ? 'whole number' : expected === 'record' ? 'object' : expected;
}

/** The types the branches of a union take, from their first type issue each (`number`, `string`), in order. */
function unionTypes(issue: z.core.$ZodIssueInvalidUnion): string[] {
  const out: string[] = [];
  for (const branch of issue.errors) {
    const t = branch.find((i) => i.code === 'invalid_type' && i.path.length === 0);
    if (t?.code === 'invalid_type') {
      const name = expectedType(t.expected);
      if (!out.includes(name)) out.push(name);
    }
  }
  return out;
}

const UNITS: Record<string, [string, string]> = { string: ['character', 'characters'], array: ['item', 'items'], set: ['item', 'items'] };

function countOf(n: number | bigint, origin: string): string {
  const unit = UNITS[origin];
  return unit ? `${n} ${Number(n) === 1 ? unit[0] : unit[1]}` : String(n);
}

/**
 * What one zod issue says about its field, in the gateway's wording (the path is not part of it):
 * - a missing required field: `is required`;
 * - a wrong type: `must be a string (got number)`; a union: `must be a number or a string (got boolean)`;
 * - a bound: `must be at most 40 characters`, `must not be empty`, `must have at most 64 items`;
 * - an enum: `must be one of "grant", "top_up" (got "gift")`, the value cut to 40 characters;
 * - an unknown field: `unknown field`;
 * - a refinement's own message as it is.
 */
function issueProblem(issue: z.core.$ZodRawIssue): string | undefined {
  const input = issue.input;
  switch (issue.code) {
    case 'invalid_type': {
      if (input === undefined) return 'is required';
      // a fraction where a whole number goes: the value says more than its type
      const got = issue.expected === 'int' && typeof input === 'number' && Number.isFinite(input) ? String(input) : jsonType(input);
      return `must be ${article(expectedType(issue.expected))} (got ${got})`;
    }
    case 'invalid_union': {
      const types = unionTypes(issue as z.core.$ZodIssueInvalidUnion);
      if (input === undefined) return 'is required';
      if (types.length === 0) return undefined;
      return `must be ${types.map(article).join(' or ')} (got ${jsonType(input)})`;
    }
    case 'too_big': {
      const inclusive = issue.inclusive !== false;
      if (issue.origin === 'string' || issue.origin === 'array' || issue.origin === 'set') {
        const verb = issue.origin === 'string' ? 'be' : 'have';
        return `must ${verb} at most ${countOf(inclusive ? issue.maximum : Number(issue.maximum) - 1, issue.origin)}`;
      }
      return `must be ${inclusive ? 'at most' : 'less than'} ${issue.maximum}`;
    }
    case 'too_small': {
      const inclusive = issue.inclusive !== false;
      if (issue.origin === 'string' || issue.origin === 'array' || issue.origin === 'set') {
        const least = inclusive ? Number(issue.minimum) : Number(issue.minimum) + 1;
        if (least === 1) return 'must not be empty';
        const verb = issue.origin === 'string' ? 'be' : 'have';
        return `must ${verb} at least ${countOf(least, issue.origin)}`;
      }
      return `must be ${inclusive ? 'at least' : 'more than'} ${issue.minimum}`;
    }
    case 'invalid_value': {
      // A missing enum field (`platform`) is missing, not a wrong value "undefined".
      if (input === undefined) return 'is required';
      const given = typeof input === 'string' ? JSON.stringify(cut40(input)) : jsonType(input);
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')} (got ${given})`;
    }
    case 'unrecognized_keys':
      return 'unknown field';
    default:
      return undefined;
  }
}

/**
 * The error map of every control-plane body parse (`schema.safeParse(body, { error:
 * bodyErrorMap })`): zod's own wording replaced as `issueProblem` says; a message a schema
 * sets itself still wins (zod: schema-level errors come before the parse's map).
 */
export const bodyErrorMap: z.core.$ZodErrorMap = (issue) => issueProblem(issue);

/**
 * A path as the gateway's errors write it: `ip_allowlist[2]`, `limits.rpm`; a key that is not an
 * identifier of at most 40 characters as `["a b"]`, cut to 40 with `…` (the message's controls
 * are escaped where every GatewayError is made); empty → `body`.
 */
export function fieldPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return 'body';
  return path.map((p, i) => {
    if (typeof p === 'number') return `[${p}]`;
    const name = String(p);
    if (/^[A-Za-z_$][\w$]{0,39}$/.test(name)) return i === 0 ? name : `.${name}`;
    return `[${JSON.stringify(cut40(name))}]`;
  }).join('');
}

/**
 * Every problem of a failed parse (made with `bodyErrorMap`), one `field: problem` each, joined by `; ` (an
 * unknown field is named itself: `extra: unknown field`). The caller throws them as a 400
 * `invalid_request`.
 */
export function bodyProblems(error: z.ZodError): string[] {
  const out: string[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push(`${fieldPath([...issue.path, key])}: unknown field`);
      continue;
    }
    out.push(`${fieldPath(issue.path)}: ${issue.message}`);
  }
  return out;
}
