// The operator CLI: `tollgate <command> …`, each command an HTTP client of the operator API.

import { processIo, runCommand, runGroup, type Command, type Group, type Io } from './core.ts';
import { accounts, keys } from './accounts.ts';
import { credits, plans } from './credits.ts';
import { groups, upstreams, webhooks } from './pools.ts';
import { closeMonth, event, exportCommand, invoices, months, statements, usage } from './reports.ts';

/** Every API command, in the order `tollgate --help` lists them. */
export const CLI_COMMANDS: ReadonlyArray<Group | Command> = [accounts, keys, credits, plans, upstreams, groups, webhooks, usage, event, invoices, statements, exportCommand, months, closeMonth];

const isGroup = (c: Group | Command): c is Group => 'commands' in c;

/** true when `name` is one of CLI_COMMANDS (the first word after `tollgate`). */
export function isCliCommand(name: string | undefined): boolean {
  return CLI_COMMANDS.some((c) => c.name === name);
}

/**
 * Lines for `tollgate --help`: each command with its one-line summary, then `more` (commands
 * served elsewhere, [name, summary]), in one column.
 */
export function cliHelpLines(more: ReadonlyArray<readonly [string, string]> = []): string {
  const rows = [...CLI_COMMANDS.map((c) => [isGroup(c) ? `${c.name} ${c.commands.map((s) => s.name.split(' ')[1]).join('|')}` : c.name, c.summary] as const), ...more];
  const width = Math.max(...rows.map(([n]) => n.length));
  return rows.map(([n, s]) => `  ${n.padEnd(width)}  ${s}`).join('\n');
}

/**
 * Runs `tollgate <argv…>` for an API command (argv[0] one of CLI_COMMANDS); returns the exit
 * code: 0 done, 1 the API answered an error or could not be reached, 2 bad usage.
 */
export async function runCli(argv: readonly string[], io: Io = processIo()): Promise<number> {
  const command = CLI_COMMANDS.find((c) => c.name === argv[0]);
  if (!command) throw new Error(`not a CLI command: ${String(argv[0])}`);
  return isGroup(command) ? runGroup(command, argv.slice(1), io) : runCommand(command, argv.slice(1), io);
}
