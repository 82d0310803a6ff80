// The operator CLI's common parts: one way to parse a command line (node:util parseArgs), one
// way to reach the operator API (URL and token), and one set of exit codes for every command.
//
// Exit codes of every `tollgate <command>` here: 0 done; 1 the API answered an error, or could not
// be reached, or a file could not be written (nothing on stdout but what was received); 2 bad usage
// (unknown command or option, a missing or malformed argument, no token). Data goes to stdout only,
// diagnostics and progress to stderr only, so `tollgate … > file` holds exactly the data.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { checkValues, type ValueKind } from './values.ts';
import { joinNegativeValues, repeatedOption } from './args.ts';

/** Where a command writes and reads; the process's own streams outside tests. */
export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

export const processIo = (): Io => ({ stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env });

/** A bad command line: its message goes to stderr with a pointer to the command's --help; exit 2. */
/**
 * Why a `fetch` that threw did not reach its server, in a few words: the socket's error (its
 * `cause`: `connect ECONNREFUSED 127.0.0.1:8080`, `getaddrinfo ENOTFOUND …`), else the error's
 * own message (undici's bare `fetch failed` says nothing of the reason).
 */
export function fetchFailure(err: unknown): string {
  const cause = (err as { cause?: { message?: unknown } } | null)?.cause?.message;
  return typeof cause === 'string' ? cause : err instanceof Error ? err.message : String(err);
}

/** The port the CLI calls without --url, TOLLGATE_URL and PORT: the server's own default. */
const DEFAULT_PORT = 8080;

/**
 * The line for a server the CLI could not reach: the address, why, and where the address came
 * from (a newcomer whose gateway is on another port otherwise has no hint; README, "Operator CLI").
 */
export function cannotReach(url: string, err: unknown): string {
  return `cannot reach ${url}: ${fetchFailure(err)} (the address: --url, else TOLLGATE_URL, else http://127.0.0.1:$PORT, port ${DEFAULT_PORT} without PORT)`;
}

export class UsageError extends Error {}

/** The run failed (API error, unreachable server, unwritable file): its message on stderr; exit 1. */
export class RunError extends Error {}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** Options every API command takes (besides its own). */
export const COMMON_OPTIONS = {
  url: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsOptionsConfig;

export const COMMON_HELP = `  --url URL        the Tollgate process's HTTP address (default $TOLLGATE_URL, else
                   http://127.0.0.1:$PORT with PORT=8080)
  -h, --help       show this help

The token is ADMIN_TOKEN, else FINANCE_TOKEN, else the file DATA_DIR/admin-token (DATA_DIR=./data)
that an embedded process writes. The finance token may only read usage and billing and close
months. Exit codes: 0 done, 1 the API answered an error or could not be reached, 2 bad usage.`;

export interface Parsed {
  values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  positionals: string[];
  help: boolean;
}

/**
 * Parses `args` against `options` (plus --url and -h/--help) with node:util parseArgs, strict.
 * Unknown options are named as typed; a negative number (`-5`) read as an option gets a hint to
 * put it after `--`, except right after a string option, whose value it is (`--limit -5`); an
 * option given twice is refused (args.ts). Does not check positionals (the command does) and does not fail when
 * --help is present, so help works on any command line.
 * @throws UsageError
 */
export function parseCommand(argv: readonly string[], options: ParseArgsOptionsConfig): Parsed {
  const all: ParseArgsOptionsConfig = { ...COMMON_OPTIONS, ...options };
  const args = joinNegativeValues(argv, all);
  // A lenient pass first: it sees --help among mistakes, and gives tokens to name an unknown
  // option exactly as typed (parseArgs's own message varies by Node version).
  const loose = parseArgs({ args: [...args], options: all, strict: false, allowPositionals: true, tokens: true });
  if (loose.values.help === true) return { values: loose.values, positionals: loose.positionals, help: true };
  for (const t of loose.tokens) {
    if (t.kind !== 'option' || Object.hasOwn(all, t.name)) continue;
    if (/^-\d/.test(t.rawName)) {
      throw new UsageError(`unknown option "${t.rawName}" (a negative number goes after --, e.g. -- ${t.rawName}${t.value ?? ''})`);
    }
    throw new UsageError(`unknown option "${t.rawName}"`);
  }
  const repeated = repeatedOption(args, all);
  if (repeated !== undefined) throw new UsageError(`${repeated} given more than once`);
  try {
    const strict = parseArgs({ args: [...args], options: all, strict: true, allowPositionals: true });
    return { values: strict.values, positionals: strict.positionals, help: false };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      throw new UsageError((err as Error).message);
    }
    throw err;
  }
}

/** `positionals` has exactly the named ones (`names` gives them as the usage line does). */
export function expectPositionals(positionals: string[], names: readonly string[], optional: readonly string[] = []): string[] {
  if (positionals.length < names.length) throw new UsageError(`missing ${names.slice(positionals.length).join(' ')}`);
  if (positionals.length > names.length + optional.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[names.length + optional.length])}`);
  }
  for (const [i, p] of positionals.entries()) {
    if (p === '') throw new UsageError(`${[...names, ...optional][i]} must not be empty`);
  }
  return positionals;
}

/**
 * Most characters of a path parameter: MAX_PATH_PARAM_CHARS of @tollgate/http, the server's rule
 * (not imported: the CLI starts without the HTTP server's modules; a test keeps the two equal).
 */
export const MAX_PATH_ID_CHARS = 100;

/**
 * `id` as one segment of an API path: percent-encoded, and refused as the server would refuse
 * it (`checkRequestTarget` of @tollgate/http): more than MAX_PATH_ID_CHARS characters, or a
 * control character (C0, DEL, C1). `.` / `..` are refused too (a URL parser resolves them,
 * also as `%2E`, so the request would go to another route: `accounts show ..` was
 * `GET /admin/v1/`). `label` names the argument in the message (e.g. ACCOUNT_ID).
 * @throws UsageError for any of those
 */
export function pathId(id: string, label: string): string {
  if (id === '.' || id === '..') throw new UsageError(`${label} ${JSON.stringify(id)} is not an id`);
  if (id.length > MAX_PATH_ID_CHARS) throw new UsageError(`${label} is ${id.length} characters long; an id is at most ${MAX_PATH_ID_CHARS}`);
  // CONTROL_CHARACTER of @tollgate/anthropic, the server's; not imported (+110 ms at every CLI start)
  if (/[\u0000-\u001f\u007f-\u009f]/.test(id)) throw new UsageError(`${label} contains a control character; no id has one`);
  return encodeURIComponent(id);
}

/** A string option's value, or undefined; `''` is refused (an empty id or name is always a mistake). */
export function stringOption(values: Parsed['values'], name: string): string | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new UsageError(`--${name} takes one value`);
  if (v === '') throw new UsageError(`--${name} needs a value`);
  return v;
}

/** `--name VALUE` restricted to `allowed`; undefined when absent. */
export function choiceOption<T extends string>(values: Parsed['values'], name: string, allowed: readonly T[]): T | undefined {
  const v = stringOption(values, name);
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')} (not ${JSON.stringify(v)})`);
  return v as T;
}

/** A month as the billing routes take it: `YYYY-MM`, month 01-12 (UTC months). */
export function monthArgument(text: string): string {
  if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(text)) throw new UsageError(`month ${JSON.stringify(text)} is not YYYY-MM (e.g. 2026-11)`);
  return text;
}

/** The operator API's address and the token to send it. */
export interface Connection {
  url: string;
  token: string;
  /** where the token came from (`tokenSource`), named when the process refuses it (401) */
  tokenSource?: string;
}

/**
 * `--url`, else TOLLGATE_URL, else http://127.0.0.1:$PORT (PORT=8080): trailing slashes dropped.
 * The address is an origin with an optional path prefix: the CLI appends each route and its
 * query to it, and sends the token as a Bearer header. User info, a query or a fragment is
 * refused naming the part, and nothing the user gave is echoed (not even a scheme: `<token>:`
 * parses as one): what goes there by mistake is mostly a key or a token, and stderr ends up in
 * CI logs.
 * @throws UsageError when it is not an http(s) URL, or has user info, a query or a fragment
 */
export function resolveUrl(values: Parsed['values'], env: NodeJS.ProcessEnv): string {
  const flag = stringOption(values, 'url');
  const source = flag !== undefined ? '--url' : env.TOLLGATE_URL ? 'TOLLGATE_URL' : 'PORT';
  const text = flag ?? (env.TOLLGATE_URL || `http://127.0.0.1:${env.PORT ?? DEFAULT_PORT}`);
  const example = '(give the address alone, e.g. http://127.0.0.1:8080)';
  let parsed: URL | undefined;
  try {
    parsed = new URL(text);
  } catch { /* named below */ }
  if (parsed === undefined) throw new UsageError(`${source}: not a URL ${example}`);
  // Not even the scheme is repeated: `<secret>:` parses as one.
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`${source}: not an http(s) URL ${example}`);
  const part = parsed.username !== '' || parsed.password !== '' ? 'user info (the token goes in ADMIN_TOKEN or FINANCE_TOKEN)'
    : parsed.search !== '' || text.includes('?') ? 'a query'
      : parsed.hash !== '' || text.includes('#') ? 'a fragment' : undefined;
  if (part !== undefined) throw new UsageError(`${source}: the address may not have ${part} ${example}`);
  return `${parsed.origin}${parsed.pathname}`.replace(/\/+$/, '');
}

/**
 * ADMIN_TOKEN, else FINANCE_TOKEN (unless `adminOnly`: the ops commands, which it may not call),
 * else the admin token the embedded process wrote to DATA_DIR/admin-token (DATA_DIR=./data);
 * undefined when none is set.
 */
/**
 * Where `resolveToken` takes the token from, for a refusal's message: `ADMIN_TOKEN`,
 * `FINANCE_TOKEN` or the admin-token file's path (the embedded process's own token, which a
 * process of another DATA_DIR, e.g. a distributed control process, refuses).
 */
export function tokenSource(env: NodeJS.ProcessEnv, adminOnly = false): string {
  if (env.ADMIN_TOKEN) return 'ADMIN_TOKEN';
  if (env.FINANCE_TOKEN && !adminOnly) return 'FINANCE_TOKEN';
  return join(env.DATA_DIR ?? './data', 'admin-token');
}

/** The text added to a 401: which token was sent, and that it must be the process's at `url` (FINANCE_TOKEN's is its own variable). */
export function refusedTokenHint(url: string, source: string): string {
  const variable = source === 'FINANCE_TOKEN' ? 'FINANCE_TOKEN to the finance token' : 'ADMIN_TOKEN to the admin token';
  return ` (the token sent is ${source}'s; set ${variable} of the process at ${url})`;
}

export function resolveToken(env: NodeJS.ProcessEnv, adminOnly = false): string | undefined {
  if (env.ADMIN_TOKEN) return env.ADMIN_TOKEN;
  if (env.FINANCE_TOKEN && !adminOnly) return env.FINANCE_TOKEN;
  try {
    return readFileSync(join(env.DATA_DIR ?? './data', 'admin-token'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** @throws UsageError naming where a token was looked for */
export function connect(values: Parsed['values'], env: NodeJS.ProcessEnv): Connection {
  const url = resolveUrl(values, env);
  const token = resolveToken(env);
  if (token === undefined) throw new UsageError(`set ADMIN_TOKEN or FINANCE_TOKEN (no ${join(env.DATA_DIR ?? './data', 'admin-token')} either)`);
  return { url, token, tokenSource: tokenSource(env) };
}

/**
 * An error body's `code: message` (Tollgate's machine code, README "Errors": `conflict`,
 * `not_found`, `state_unavailable`…), else its Anthropic `type: message`, else the body's
 * start, else the status text.
 */
function errorText(status: number, body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { type?: unknown; code?: unknown; message?: unknown } };
    if (parsed.error && typeof parsed.error.message === 'string') {
      const name = typeof parsed.error.code === 'string' ? parsed.error.code : parsed.error.type;
      return `${status} ${typeof name === 'string' ? `${name}: ` : ''}${parsed.error.message}`;
    }
  } catch { /* not JSON: shown as text */ }
  const text = body.trim().slice(0, 500);
  return text === '' ? `${status}` : `${status}: ${text}`;
}

export interface CallOptions {
  query?: Record<string, string | undefined>;
  body?: unknown;
}

/** HTTP client of the operator API: Bearer token, JSON bodies, errors as RunError. */
export class Api {
  readonly url: string;
  readonly #token: string;

  readonly #tokenSource: string | undefined;

  constructor(connection: Connection) {
    this.url = connection.url;
    this.#token = connection.token;
    this.#tokenSource = connection.tokenSource;
  }

  /**
   * `path` with `query` (undefined values left out), percent-encoded.
   * @throws UsageError when the URL parser would send it elsewhere (a dot segment not built by `pathId`)
   */
  href(path: string, query: CallOptions['query'] = {}): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.append(k, v);
    const qs = params.toString();
    const href = `${this.url}${path}${qs === '' ? '' : `?${qs}`}`;
    if (!new URL(href).pathname.endsWith(path)) throw new UsageError(`${path} is not a path of the API (an id of "." or ".."?)`);
    return href;
  }

  /**
   * Sends the request; resolves to the response when it is 2xx.
   * @throws RunError when the server cannot be reached (naming the URL) or answers an error
   *   (its status, error code and message)
   */
  async send(method: string, path: string, opts: CallOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.#token}` };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(this.href(path, opts.query), {
        method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      });
    } catch (err) {
      throw new RunError(cannotReach(this.url, err));
    }
    if (!res.ok) {
      const hint = res.status === 401 && this.#tokenSource !== undefined ? refusedTokenHint(this.url, this.#tokenSource) : '';
      throw new RunError(errorText(res.status, await res.text().catch(() => '')) + hint);
    }
    return res;
  }

  /** `send` and the JSON body. @throws RunError also when a 2xx body is not JSON */
  async json<T = Record<string, unknown>>(method: string, path: string, opts: CallOptions = {}): Promise<{ status: number; body: T }> {
    const res = await this.send(method, path, opts);
    const text = await res.text();
    try {
      return { status: res.status, body: JSON.parse(text) as T };
    } catch {
      throw new RunError(`${res.status} from ${path} is not JSON: ${text.slice(0, 200)}`);
    }
  }
}

/** What a command's `run` gets. */
export interface Context {
  /** e.g. "tollgate accounts create": the prefix of every diagnostic */
  name: string;
  values: Parsed['values'];
  positionals: string[];
  io: Io;
  /** the API client; resolving URL and token here, so --help and usage errors need neither */
  api(): Api;
}

/** One runnable command (a top-level one such as `usage`, or a subcommand such as `accounts create`). */
export interface Command {
  /** the words after `tollgate`, e.g. "accounts create" */
  name: string;
  /** one line for the listing of its group and of `tollgate --help` */
  summary: string;
  /** the whole --help text (starts with "Usage: tollgate …"); COMMON_HELP is appended */
  help: string;
  options: ParseArgsOptionsConfig;
  /** its typed options (credits, times, CIDRs, page sizes): checked before `run`, so before any request */
  values?: Readonly<Record<string, ValueKind>>;
  run(ctx: Context): Promise<number | void>;
}

/** A command with subcommands (`accounts`, `keys`, …). */
export interface Group {
  name: string;
  summary: string;
  commands: Command[];
}

export const helpOf = (c: Command) => `${c.help}\n\nOptions every command takes:\n${COMMON_HELP}\n`;

export function groupHelp(g: Group): string {
  const width = Math.max(...g.commands.map((c) => c.name.length));
  const lines = g.commands.map((c) => `  tollgate ${c.name.padEnd(width)}  ${c.summary}`);
  return `Usage: tollgate ${g.name} <${g.commands.map((c) => c.name.split(' ').at(-1)).join('|')}> …\n\n${g.summary}\n\n${lines.join('\n')}\n\n` +
    `tollgate ${g.name} <command> --help shows one command's options.\n`;
}

/**
 * Runs one command on its arguments: --help → its help on stdout, 0; a UsageError → message and
 * a pointer to --help on stderr, 2; a RunError → message on stderr, 1. Returns the exit code.
 */
export async function runCommand(command: Command, args: readonly string[], io: Io): Promise<number> {
  const name = `tollgate ${command.name}`;
  try {
    const parsed = parseCommand(args, command.options);
    if (parsed.help) {
      io.stdout.write(helpOf(command));
      return EXIT_OK;
    }
    if (command.values) await checkValues(parsed.values, command.values);
    let api: Api | undefined;
    const ctx: Context = {
      name, values: parsed.values, positionals: parsed.positionals, io,
      api: () => (api ??= new Api(connect(parsed.values, io.env))),
    };
    return (await command.run(ctx)) ?? EXIT_OK;
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`${name}: ${err.message}\n(see ${name} --help)\n`);
      return EXIT_USAGE;
    }
    if (err instanceof RunError) {
      io.stderr.write(`${name}: ${err.message}\n`);
      return EXIT_FAILED;
    }
    throw err;
  }
}

/** Runs `tollgate <group> <sub> …`: help of the group on -h/--help, exit 2 on a missing or unknown subcommand. */
export async function runGroup(group: Group, args: readonly string[], io: Io): Promise<number> {
  const sub = args[0];
  if (sub === '--help' || sub === '-h') {
    io.stdout.write(groupHelp(group));
    return EXIT_OK;
  }
  const command = group.commands.find((c) => c.name === `${group.name} ${sub}`);
  if (!command) {
    io.stderr.write(`tollgate ${group.name}: ${sub === undefined ? 'missing command' : `unknown command ${JSON.stringify(sub)}`}\n${groupHelp(group)}`);
    return EXIT_USAGE;
  }
  return runCommand(command, args.slice(1), io);
}
