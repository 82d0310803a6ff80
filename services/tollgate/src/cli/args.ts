// Command-line conventions shared by every parser built on node:util parseArgs in this project:
// the operator CLI (cli/core.ts) and the bench tools (bench/cli.ts).
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

/**
 * `argv` with a negative number given as a separate argument joined to the string option before
 * it (`--limit -5` becomes `--limit=-5`, `-n -5` becomes `-n-5`), never after `--`. parseArgs
 * otherwise refuses such a value as "ambiguous" in a four-line message; joined, it reaches the
 * option's own check and its one-line message. A negative *positional* (an amount) is left alone.
 */
export function joinNegativeValues(argv: readonly string[], options: ParseArgsOptionsConfig): string[] {
  const out: string[] = [];
  const end = argv.indexOf('--');
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    if ((end < 0 || i < end) && next !== undefined && /^-(\d|\.\d|Infinity$)/.test(next) && isValueOption(arg, options)) {
      out.push(arg.startsWith('--') ? `${arg}=${next}` : `${arg}${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/** true when `arg` is a string option given without `=` (so the next argument is its value). */
function isValueOption(arg: string, options: ParseArgsOptionsConfig): boolean {
  if (arg.startsWith('--') && !arg.includes('=')) return options[arg.slice(2)]?.type === 'string';
  if (/^-[^-]$/.test(arg)) return Object.values(options).some((o) => o.short === arg[1] && o.type === 'string');
  return false;
}

/**
 * The first option of `options` given more than once in `argv` (as typed, e.g. `--reference`),
 * unless it is declared `multiple`; undefined when none is. parseArgs keeps the last silently,
 * which for `--reference x --reference y` or `--status active --status disabled` means acting on a
 * value the user may not have meant: the parsers refuse it instead.
 */
export function repeatedOption(argv: readonly string[], options: ParseArgsOptionsConfig): string | undefined {
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const seen = new Set<string>();
  for (const t of tokens) {
    if (t.kind !== 'option' || options[t.name]?.multiple === true) continue;
    if (seen.has(t.name)) return t.name.length === 1 ? `-${t.name}` : `--${t.name}`;
    seen.add(t.name);
  }
  return undefined;
}
