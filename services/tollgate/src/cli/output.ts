// What the operator CLI prints: JSON, tables for people, downloads with progress, confirmations.

import { isAbsolute, resolve } from 'node:path';
import { createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { createInterface } from 'node:readline/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Table from 'cli-table3';
import { RunError, UsageError, choiceOption, expectPositionals, pathId, stringOption, type Command, type Context, type Io, type Parsed } from './core.ts';

/** Pretty JSON (2 spaces) and a newline on stdout. */
export function printJson(io: Io, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const cell = (v: unknown): string => (v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/**
 * `rows` as a bordered text table on stdout, one column per `columns` entry ([field, heading]);
 * without `columns`, every field of the rows in first-seen order. Column widths count wide
 * (CJK) characters as two (cli-table3). No colours: the output may be copied or logged.
 */
export function printTable(io: Io, rows: ReadonlyArray<Record<string, unknown>>, columns?: ReadonlyArray<readonly [string, string]>): void {
  const cols = columns ?? [...new Set(rows.flatMap((r) => Object.keys(r)))].map((k) => [k, k] as const);
  const table = new Table({
    head: cols.map(([, h]) => h), style: { head: [], border: [] },
    // no rule between rows: a listing stays one line per row
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
  });
  for (const r of rows) table.push(cols.map(([k]) => cell(r[k])));
  io.stdout.write(`${table.toString()}\n`);
}

/** `--format json|table` of a listing: given, else a table on a terminal and JSON into a pipe or file. */
export function listFormat(values: Parsed['values'], io: Io): 'json' | 'table' {
  return choiceOption(values, 'format', ['json', 'table'] as const) ?? (io.stdout.isTTY ? 'table' : 'json');
}

/**
 * A command that takes one id, sends `method path(id)` (the id percent-encoded) without a body
 * and prints the JSON answer: the shape of every show, delete and revoke.
 */
export function byIdCommand(c: { name: string; summary: string; help: string; id: string; method: 'GET' | 'DELETE'; path: (id: string) => string }): Command {
  return {
    name: c.name, summary: c.summary, help: c.help, options: {},
    async run(ctx) {
      const [id] = expectPositionals(ctx.positionals, [c.id]);
      printJson(ctx.io, (await ctx.api().json(c.method, c.path(pathId(id!, c.id)))).body);
    },
  };
}

/** A `{data: [...]}` listing as `format` says. */
export function printList(io: Io, format: 'json' | 'table', body: { data?: unknown }, columns: ReadonlyArray<readonly [string, string]>): void {
  if (format === 'json') return printJson(io, body);
  printTable(io, Array.isArray(body.data) ? body.data as Array<Record<string, unknown>> : [], columns);
}

/** 1 MiB: how often a progress line is written when stderr is not a terminal. */
const PROGRESS_STEP_BYTES = 1 << 20;
/** ms between redraws of the progress line on a terminal. */
const PROGRESS_REDRAW_MS = 100;

const size = (n: number) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);

/**
 * Counts the bytes passing through; with `report`, says so on stderr: on a terminal one line
 * redrawn in place, otherwise one line per MiB. `done()` writes the final line (exact count).
 * `toTerminal`: the data itself goes to a terminal stdout, i.e. the same screen as the progress
 * line; an open progress line is then ended (newline on stderr) before each chunk is passed on,
 * so the data never starts in the middle of it.
 */
function byteCounter(ctx: Context, total: number | undefined, report: boolean, toTerminal = false) {
  const tty = ctx.io.stderr.isTTY === true;
  let lineOpen = false;
  let received = 0;
  let lastDraw = 0;
  let nextStep = PROGRESS_STEP_BYTES;
  const text = () => `${ctx.name}: ${received} bytes received${total === undefined ? '' : ` of ${total}`} (${size(received)})`;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, next) {
      received += chunk.length;
      if (report && tty) {
        const now = Date.now();
        if (now - lastDraw >= PROGRESS_REDRAW_MS) {
          lastDraw = now;
          ctx.io.stderr.write(`\r${text()}`);
          lineOpen = true;
        }
        if (lineOpen && toTerminal) {
          ctx.io.stderr.write('\n');
          lineOpen = false;
        }
      } else if (report && received >= nextStep) {
        nextStep = (Math.floor(received / PROGRESS_STEP_BYTES) + 1) * PROGRESS_STEP_BYTES;
        ctx.io.stderr.write(`${text()}\n`);
      }
      next(null, chunk);
    },
  });
  return {
    stream,
    done: () => { if (report) ctx.io.stderr.write(`${tty ? '\r' : ''}${text()}, done\n`); lineOpen = false; },
    /** a failed download: end an open progress line so the error message starts on its own line */
    cut: () => { if (lineOpen) ctx.io.stderr.write('\n'); lineOpen = false; },
    received: () => received,
  };
}

export interface DownloadOptions {
  /** a file to write (through FILE.part, renamed when complete); undefined or "-": stdout */
  output?: string | undefined;
  /** report bytes received on stderr (always when stderr is a terminal) */
  progress?: boolean;
  /** binary content (PDF, Parquet): refused on a terminal stdout */
  binary?: boolean;
}

/**
 * --output FILE of a download command; "-" and absent mean stdout. A relative FILE is taken from
 * the directory the command was typed in: under `npm run -s tollgate -- …` that is npm's
 * `INIT_CWD` (npm runs the script from the package root), else the working directory.
 */
export function outputOption(values: Parsed['values'], env: NodeJS.ProcessEnv): string | undefined {
  const o = stringOption(values, 'output');
  if (o === undefined || o === '-') return undefined;
  return env.INIT_CWD && !isAbsolute(o) ? resolve(env.INIT_CWD, o) : o;
}

/**
 * Refuses binary content bound for a terminal (it would garble it) before anything is asked.
 * @throws UsageError
 */
export function refuseBinaryOnTerminal(ctx: Context, opts: DownloadOptions, format: string): void {
  if (opts.binary && opts.output === undefined && ctx.io.stdout.isTTY) {
    throw new UsageError(`${format} is binary: give --output FILE or redirect stdout (> FILE)`);
  }
}

/**
 * Streams a response body to stdout or to `opts.output`. A file is written as FILE.part and
 * renamed only once every byte arrived, so a cut download never leaves a complete-looking file.
 * Resolves to the byte count. @throws RunError when the body or the file fails
 */
export async function download(ctx: Context, res: Response, opts: DownloadOptions): Promise<number> {
  const lengthHeader = res.headers.get('content-length');
  // fetch decodes a content-encoding, after which content-length no longer counts these bytes
  const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
  const total = !encoded && lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  const counter = byteCounter(ctx, total, opts.progress === true || ctx.io.stderr.isTTY === true,
    opts.output === undefined && ctx.io.stdout.isTTY === true);
  const body = res.body ? Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>) : Readable.from([]);
  const complete = () => {
    if (total !== undefined && counter.received() !== total) throw new Error(`cut short: ${counter.received()} of ${total} bytes`);
  };
  if (opts.output === undefined) {
    try {
      await pipeline(body, counter.stream, ctx.io.stdout, { end: false });
      complete();
    } catch (err) {
      counter.cut();
      throw new RunError(`download failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  } else {
    const part = `${opts.output}.part`;
    try {
      await pipeline(body, counter.stream, createWriteStream(part));
      complete();
      await rename(part, opts.output);
    } catch (err) {
      counter.cut();
      await unlink(part).catch(() => {});
      throw new RunError(`download to ${opts.output} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  counter.done();
  return counter.received();
}

/**
 * Asks `question` on stderr and reads one line from stdin; true for "y" or "yes" (any case).
 * False when stdin ends first.
 */
export async function confirm(io: Io, question: string): Promise<boolean> {
  const rl = createInterface({ input: io.stdin, output: io.stderr, terminal: false });
  try {
    const closed = new Promise<string>((done) => rl.once('close', () => done('')));
    const answer = await Promise.race([rl.question(question), closed]);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}
