// The command-line conventions every runnable file under bench/ follows (bench/README.md
// "Command lines"), in one place so that each entry point only states its options and usage:
//   -h / --help     usage on stdout, exit 0 (wins over any mistake on the same line)
//   bad usage       one line on stderr naming the option or value, exit 2, nothing started
//   run-time error  `<name>: failed: <message>` on stderr (stack frames after it), exit 1
// Progress and diagnostics go to stderr; a result (a table, JSON) to stdout.
// node:util parseArgs does the parsing; this adds the help, the exit codes and the one-line
// messages (parseArgs's own wording is long and varies between Node versions).
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { fixKafkajsRequestQueue } from '@tollgate/events';
import { joinNegativeValues, repeatedOption } from '../services/tollgate/src/cli/args.ts';

/** Exit status of a bad command line (unknown option, malformed or out-of-range value). */
export const EXIT_USAGE = 2;
/** Exit status of a run that failed after a good command line. */
export const EXIT_FAILED = 1;

/** A bad command line or a bad setting from the environment: one line on stderr, exit 2. */
export class UsageError extends Error {}

/** A command line as given to {@link commandLine}. */
export interface CommandSpec<O extends ParseArgsOptionsConfig> {
  /** how messages start, e.g. `bench/consumers` */
  name: string;
  /** the whole --help text: what it does, every option with its default and unit, environment, an example */
  usage: string;
  /** the options besides -h/--help (always added) */
  options: O;
  /** positionals are allowed (default: refused as bad usage) */
  positionals?: boolean;
}

type WithHelp<O extends ParseArgsOptionsConfig> = O & { help: { type: 'boolean'; short: 'h' } };
type Parsed<O extends ParseArgsOptionsConfig> = ReturnType<typeof parseArgs<{ args: string[]; options: WithHelp<O>; strict: true; allowPositionals: boolean }>>;

/** Writes `<name>: <message> (see --help)` on stderr and exits with {@link EXIT_USAGE}. */
export function exitUsage(name: string, message: string): never {
  process.stderr.write(`${name}: ${message} (see --help)\n`);
  process.exit(EXIT_USAGE);
}

/** The option a parseArgs failure is about, named as typed (`--x`, `-x`), from a lenient pass. */
function unknownOption(argv: readonly string[], options: ParseArgsOptionsConfig): string | undefined {
  const loose = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  for (const t of loose.tokens) if (t.kind === 'option' && !Object.hasOwn(options, t.name)) return t.rawName;
  return undefined;
}

/**
 * Parses `argv` strictly against `spec.options` plus -h/--help. With -h/--help anywhere before a
 * `--`, prints `spec.usage` on stdout and exits 0. A bad command line (unknown option, missing
 * value, value given to a flag, a positional where none is taken) prints one line on stderr and
 * exits 2; it never returns then.
 * @returns parseArgs's values and positionals
 */
export function commandLine<O extends ParseArgsOptionsConfig>(spec: CommandSpec<O>, argv: readonly string[] = process.argv.slice(2)): Parsed<O> {
  const end = argv.indexOf('--');
  const flags = end < 0 ? argv : argv.slice(0, end);
  if (flags.includes('--help') || flags.includes('-h')) {
    process.stdout.write(spec.usage.endsWith('\n') ? spec.usage : `${spec.usage}\n`);
    process.exit(0);
  }
  const options = { ...spec.options, help: { type: 'boolean', short: 'h' } } as WithHelp<O>;
  const args = joinNegativeValues(argv, options);
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: spec.positionals ?? false }) as Parsed<O>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS_')) throw err;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const name = unknownOption(argv, options);
      if (name !== undefined) exitUsage(spec.name, `unknown option "${name}"`);
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      // parseArgs' own tokens say which argument is the positional (after `--` too)
      const loose = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });
      const extra = loose.tokens.find((t) => t.kind === 'positional');
      exitUsage(spec.name, `unexpected argument ${JSON.stringify(extra?.kind === 'positional' ? extra.value : '')}`);
    }
    exitUsage(spec.name, (err as Error).message.replace(/\s*\n\s*/g, ' '));
  }
  const repeated = repeatedOption(args, options);
  if (repeated !== undefined) exitUsage(spec.name, `${repeated} given more than once`);
  // An option given an empty or blank value (`--base=`, `--scenarios ''`) is a mistake: no
  // option here means anything by an empty text, and reading it as "not given" would start a
  // run the user did not ask for (the default, or this checkout in place of another).
  for (const [name, value] of Object.entries(parsed.values)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (typeof v === 'string' && v.trim() === '') exitUsage(spec.name, `--${name}: expected a value, got ${JSON.stringify(v)}`);
    }
  }
  return parsed;
}

/** `n` and the noun, singular for 1 (`counted(1, 'round')` is "1 round", `counted(4, 'round')` "4 rounds"). */
export function counted(n: number, noun: string): string {
  return `${n} ${n === 1 ? noun : `${noun}s`}`;
}

/** A decimal number as typed: sign, digits with an optional fraction, optional exponent. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Bounds of a numeric option, inclusive; `integer` refuses fractions. */
export interface NumberBounds {
  min: number;
  max: number;
  integer?: boolean;
}

/**
 * `raw` (an option's or variable's text; `_` allowed as a digit separator, as in 1_000_000) as a
 * number within `bounds`, or `fallback` when absent (`undefined`). An empty or blank text is
 * refused like any other bad value (`--duration=` is a mistake, not the default); a caller that
 * reads an environment variable passes `process.env.X || undefined` to treat an empty one as unset.
 * @throws UsageError naming `name` and the accepted range
 */
export function numberValue(name: string, raw: string | undefined, fallback: number, bounds: NumberBounds): number {
  if (raw === undefined) return fallback;
  // decimal notation only: Number() alone would also take 0x10, 0b1 and 0o7
  const text = raw.replaceAll('_', '');
  const n = DECIMAL.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(n) || n < bounds.min || n > bounds.max || (bounds.integer === true && !Number.isInteger(n))) {
    throw new UsageError(`${name}: expected a${bounds.integer ? 'n integer' : ' number'} from ${bounds.min} to ${bounds.max}, got "${raw}"`);
  }
  return n;
}

/**
 * A comma-separated list of numbers within `bounds` (e.g. `--sink-batch 1000,20000`).
 * @throws UsageError on an empty list or a bad entry
 */
export function numberList(name: string, raw: string, bounds: NumberBounds): number[] {
  const parts = raw.split(',').map((s) => s.trim());
  if (parts.some((p) => p === '')) throw new UsageError(`${name}: expected a comma-separated list of numbers, got "${raw}"`);
  return parts.map((p) => numberValue(name, p, NaN, bounds));
}

/**
 * A comma-separated list of names, each one of `allowed`, without repeats (order as given).
 * @throws UsageError naming the unknown entries and what is allowed
 */
export function choiceList<T extends string>(name: string, raw: string, allowed: readonly T[]): T[] {
  const parts = raw.split(',').map((s) => s.trim());
  const bad = parts.filter((p) => !(allowed as readonly string[]).includes(p));
  if (bad.length > 0 || parts.length === 0) {
    throw new UsageError(`${name}: unknown ${bad.map((b) => JSON.stringify(b)).join(', ')}; expected any of ${allowed.join(', ')}`);
  }
  return [...new Set(parts)] as T[];
}

/**
 * Environment variables given as `NAME=VALUE,NAME=VALUE` (e.g. `--env KAFKA_LINGER_MS=5`); an
 * empty entry is skipped, a value may contain `=`.
 * @throws UsageError on an entry that is not NAME=VALUE
 */
export function envPairs(name: string, raw: string): Record<string, string> {
  const pairs = raw.split(',').filter(Boolean);
  const bad = pairs.find((kv) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(kv));
  if (bad !== undefined) throw new UsageError(`${name}: expected NAME=VALUE pairs separated by commas, got "${bad}"`);
  return Object.fromEntries(pairs.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

/** One of `allowed` (a UsageError naming the choices otherwise, a list included). */
export function oneChoice<T extends string>(name: string, raw: string, allowed: readonly T[]): T {
  const [first, ...more] = choiceList(name, raw, allowed);
  if (more.length > 0) throw new UsageError(`${name}: one value, not a list; expected one of ${allowed.join(', ')}`);
  return first!;
}

/** `<name>: failed: <message>` and the error's stack frames, for stderr. */
function failure(name: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const frames = err instanceof Error ? (err.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l)).join('\n') : '';
  return `${name}: failed: ${message}\n${frames ? `${frames}\n` : ''}`;
}

/**
 * For a script whose work runs at the top level (top-level await) rather than in a `main`: an
 * error that escapes it is reported as {@link runMain} does (exit 1, a {@link UsageError} exit 2)
 * instead of Node's uncaught-exception dump.
 */
export function reportUncaught(name: string): void {
  process.on('uncaughtException', (err) => {
    if (err instanceof UsageError) exitUsage(name, err.message);
    process.stderr.write(failure(name, err));
    process.exit(EXIT_FAILED);
  });
}

/**
 * Runs an entry point's `main` with the exit-code convention: its returned code (0 when none);
 * a {@link UsageError} is one line on stderr and exit 2; any other error is
 * `<name>: failed: <message>` on stderr followed by its stack frames, exit 1. kafkajs' request
 * queue is fixed first (fixKafkajsRequestQueue: no 1 ms poll per connection, no negative-timer
 * warning), as in bench/run.ts.
 */
export function runMain(name: string, main: () => Promise<number | void> | number | void): void {
  // Before the bench's own kafkajs clients (topics made and removed before any KafkaLog exists):
  // their connections would poll every millisecond, and the negative-timer warning read as a
  // fault on stderr (dist-ab).
  fixKafkajsRequestQueue();
  Promise.resolve().then(main).then(
    (code) => process.exit(code ?? 0),
    (err: unknown) => {
      if (err instanceof UsageError) exitUsage(name, err.message);
      process.stderr.write(failure(name, err));
      process.exit(EXIT_FAILED);
    },
  );
}

/**
 * For a bench module that is a part of `npm run bench` rather than a command of its own: when it
 * is run directly (`node bench/pool.ts`), say what to run instead, on stdout with exit 0 for
 * -h/--help, else on stderr with exit 2. Call with the module's `import.meta`.
 */
export function notACommand(meta: ImportMeta, instead: string): void {
  if (!meta.main) return;
  const file = `bench/${meta.filename.split('/bench/').pop()!}`;
  const text = `${file} is a part of npm run bench, not a command of its own; run ${instead}`;
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${text}\n`);
    process.exit(0);
  }
  process.stderr.write(`${text}\n`);
  process.exit(EXIT_USAGE);
}
