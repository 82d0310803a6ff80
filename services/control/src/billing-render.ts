// Billing documents as files: invoices and statements as CSV or PDF, the month's export of every
// account's invoice lines as CSV, JSON Lines or Parquet. Every renderer is a pure function of its
// input: no clock, no random ids, no locale, so the same invoice gives the same bytes on any
// machine and in any process (issue 9: "the same inputs always give byte-identical exports").
// Money is never a float here: the shapes already carry exact decimal text, and the renderers
// only copy it (Parquet's integer columns are INT64 from the integer text).

import { stringify } from 'csv-stringify/sync';
import { ParquetWriter, ByteWriter } from 'hyparquet-writer';
import PDFDocument from 'pdfkit';
import { Readable } from 'node:stream';
import { DIMENSIONS } from '@tollgate/pricing';
import type { Invoice, InvoiceLine, Statement } from './billing-types.ts';

/** A rendered file: its bytes, the `content-type` to send and a `content-disposition` filename. */
export interface RenderedFile {
  body: Buffer;
  contentType: string;
  filename: string;
}

/**
 * Fallbacks for documents frozen before they carried `seller` and `account_name` (the document's
 * own fields win: a closed month renders from its snapshot alone, never from today's values).
 */
export interface RenderOptions {
  /** the heading of a PDF: who issues the invoice (default `Tollgate`) */
  seller?: string;
  /** the account's name, shown beside its id (customer-chosen: sanitized) */
  accountName?: string;
}

/** The document's own seller and account name, else the fallbacks. */
function parties(doc: { account_id: string; account_name?: string; seller?: string }, options: RenderOptions): { seller: string; account: string } {
  const name = doc.account_name ?? options.accountName ?? '';
  return {
    seller: doc.seller ?? options.seller ?? 'Tollgate',
    account: name === '' ? doc.account_id : `${name} (${doc.account_id})`,
  };
}

export type DocumentFormat = 'csv' | 'pdf';
export type ExportFormat = 'csv' | 'json' | 'parquet';
export const DOCUMENT_FORMATS: readonly DocumentFormat[] = ['csv', 'pdf'];
export const EXPORT_FORMATS: readonly ExportFormat[] = ['csv', 'json', 'parquet'];

/**
 * The columns of every line-level file (invoice CSV, export CSV / JSON Lines / Parquet), in this
 * order: InvoiceLine's fields as billing-types.ts defines them.
 */
export const LINE_COLUMNS = [
  'account_id', 'month', 'section', 'source_month', 'model', 'dimension',
  'quantity', 'unit_price', 'amount', 'amount_micros',
] as const satisfies readonly (keyof InvoiceLine)[];

/** The columns of a statement CSV (one header row, one data row), Statement's fields in order. */
export const STATEMENT_COLUMNS = [
  'account_id', 'account_name', 'month', 'status', 'closed_at', 'opening_balance', 'top_ups', 'grants', 'usage',
  'refunds', 'adjustments', 'closing_balance', 'currency', 'credit_value',
] as const satisfies readonly (keyof Statement)[];

const CONTENT_TYPES = {
  csv: 'text/csv; charset=utf-8',
  json: 'application/x-ndjson; charset=utf-8',
  parquet: 'application/vnd.apache.parquet',
  pdf: 'application/pdf',
} as const;
const EXTENSIONS = { csv: 'csv', json: 'jsonl', parquet: 'parquet', pdf: 'pdf' } as const;

/** Lines per CSV / JSON chunk and rows per Parquet row group: bounds what one chunk holds in memory. */
export const EXPORT_BATCH = 10_000;

// ---------------------------------------------------------------------------------------------
// CSV

const NUMBER = /^-?\d+(\.\d+)?$/;
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * A cell a spreadsheet will not evaluate (OWASP "CSV Injection"): text starting with `=`, `+`,
 * `-`, `@`, tab or CR gets a leading `'`, which spreadsheets show as text. Plain numbers
 * (`-1.500000`, a refund) are left alone: a number is not a formula, and prefixing it would turn
 * every negative amount into text.
 */
export function csvSafe(value: string): string {
  return FORMULA_START.test(value) && !NUMBER.test(value) ? `'${value}` : value;
}

function csvText(rows: readonly (readonly string[])[], header: readonly string[] | null): string {
  // RFC 4180: CRLF after every record (the last included), quotes only where needed, UTF-8 without BOM.
  return stringify(rows.map((r) => r.map(csvSafe)), {
    header: header !== null,
    columns: header === null ? undefined : [...header],
    record_delimiter: '\r\n',
    // csv-stringify quotes a field holding the whole delimiter (CRLF) but not a lone CR or LF;
    // RFC 4180 (2.6) wants either quoted, or a reader splits the record there.
    quoted_match: /[\r\n]/,
    bom: false,
  });
}

function lineCells(line: InvoiceLine): string[] {
  return LINE_COLUMNS.map((c) => line[c]);
}

// ---------------------------------------------------------------------------------------------
// PDF

/** Standard PDF fonts speak WinAnsi only: anything else shows as `?`, never as a wrong glyph. */
function pdfText(value: string): string {
  return value.replace(/[^\x20-\x7e\xa0-\xff]/g, '?');
}

function monthStart(month: string): Date {
  return new Date(`${month}-01T00:00:00Z`);
}

function pdfDate(doc: { closed_at: string | null; month: string }): Date {
  // Fixed metadata: the document "was created" when its month closed, or at the month's start
  // while open; a clock here would make two renders of one invoice differ.
  if (doc.closed_at !== null) {
    const t = new Date(doc.closed_at);
    if (!Number.isNaN(t.getTime())) return t;
  }
  return monthStart(doc.month);
}

/** Collects a finished pdfkit document. pdfkit writes synchronously (deflateSync), so every byte is buffered by end(). */
function pdfBytes(doc: PDFKit.PDFDocument): Buffer {
  doc.end();
  const parts: Buffer[] = [];
  for (let chunk = doc.read() as Buffer | null; chunk !== null; chunk = doc.read() as Buffer | null) parts.push(chunk);
  return Buffer.concat(parts);
}

function newPdf(title: string, author: string, created: Date): PDFKit.PDFDocument {
  return new PDFDocument({
    size: 'A4',
    margin: 50,
    compress: true,
    info: { Title: title, Author: author, Creator: 'Tollgate', Producer: 'Tollgate', CreationDate: created },
  });
}

const DIMENSION_TEXT = new Map(DIMENSIONS.map((d) => [d.key as string, d]));
const SECTION_TEXT: Record<InvoiceLine['section'], string> = {
  usage: 'Usage',
  late_usage: 'Late usage',
  unitemized: 'Requests not itemised',
  rounding: 'Rounding',
  refund: 'Refund',
  adjustment: 'Adjustment',
};

function statusText(doc: { status: 'open' | 'closed'; closed_at: string | null }): string {
  return doc.status === 'closed'
    ? `closed${doc.closed_at === null ? '' : ` ${doc.closed_at}`} (final)`
    : 'open (may still change until the month is closed)';
}

function heading(doc: PDFKit.PDFDocument, seller: string, title: string, rows: [string, string][]): void {
  doc.font('Helvetica-Bold').fontSize(18).text(pdfText(seller));
  doc.moveDown(0.3);
  doc.font('Helvetica').fontSize(13).text(title);
  doc.moveDown(0.8);
  doc.fontSize(10);
  for (const [label, value] of rows) {
    const y = doc.y;
    doc.font('Helvetica-Bold').text(label, 50, y, { width: 110, lineBreak: false });
    doc.font('Helvetica').text(pdfText(value), 160, y, { width: 385 });
  }
  doc.moveDown(1);
}

interface Column { title: string; width: number; align: 'left' | 'right' }
const INVOICE_TABLE: Column[] = [
  { title: 'Item', width: 110, align: 'left' },
  { title: 'Model', width: 135, align: 'left' },
  { title: 'Quantity', width: 75, align: 'right' },
  { title: 'Unit price', width: 85, align: 'right' },
  { title: 'Amount (credits)', width: 90, align: 'right' },
];
const ROW_HEIGHT = 14;

function tableRow(doc: PDFKit.PDFDocument, cells: string[], bold: boolean): void {
  if (doc.y + ROW_HEIGHT > doc.page.height - doc.page.margins.bottom) doc.addPage();
  const y = doc.y;
  let x = doc.page.margins.left;
  doc.font(bold ? 'Helvetica-Bold' : 'Helvetica').fontSize(8);
  INVOICE_TABLE.forEach((col, i) => {
    doc.text(pdfText(cells[i] ?? ''), x, y, { width: col.width - 4, align: col.align, lineBreak: false, ellipsis: true });
    x += col.width;
  });
  if (bold) {
    // a rule under the header and the total, as on a printed invoice
    doc.moveTo(doc.page.margins.left, y + 11).lineTo(x - 4, y + 11).lineWidth(0.5).stroke();
  }
  doc.x = doc.page.margins.left;
  doc.y = y + ROW_HEIGHT;
}

function itemText(line: InvoiceLine): string {
  const dim = DIMENSION_TEXT.get(line.dimension);
  const what = line.dimension === '' ? SECTION_TEXT[line.section] : dim?.description ?? line.dimension;
  return line.section === 'late_usage' ? `${what} (late, ${line.source_month})` : what;
}

function unitPriceText(line: InvoiceLine): string {
  if (line.unit_price === '') return '';
  return DIMENSION_TEXT.get(line.dimension)?.kind === 'token' ? `${line.unit_price} / 1M` : `${line.unit_price} each`;
}

// ---------------------------------------------------------------------------------------------
// Invoices and statements

/**
 * An invoice as a file.
 * - `csv`: RFC 4180 (CRLF, UTF-8 without BOM), header row LINE_COLUMNS, one row per invoice line
 *   in the invoice's order, then one row with `section` `total` whose `amount`/`amount_micros` are
 *   the invoice total (skip it when summing lines). Formula-looking text is neutralized (csvSafe).
 * - `pdf`: A4, seller heading, account, month, status (closed_at when closed), the lines table
 *   (unit prices in credits per million tokens for token dimensions, per unit otherwise),
 *   totals in credits and in the catalog's currency. Document date = closed_at, or the month's
 *   first instant while open; nothing else varies, so equal invoices give equal bytes.
 * Filename `invoice-<account_id>-<YYYY-MM>.<ext>`. Throws only on a format outside csv|pdf.
 */
export function renderInvoice(invoice: Invoice, format: DocumentFormat, options: RenderOptions = {}): RenderedFile {
  const filename = `invoice-${fileSafe(invoice.account_id)}-${invoice.month}.${EXTENSIONS[format]}`;
  if (format === 'csv') {
    const rows = invoice.lines.map(lineCells);
    rows.push(LINE_COLUMNS.map((c) => {
      switch (c) {
        case 'account_id': return invoice.account_id;
        case 'month': return invoice.month;
        case 'section': return 'total';
        case 'source_month': return invoice.month;
        case 'amount': return invoice.total.credits;
        case 'amount_micros': return invoice.total.micro_credits;
        default: return '';
      }
    }));
    return { body: Buffer.from(csvText(rows, LINE_COLUMNS), 'utf8'), contentType: CONTENT_TYPES.csv, filename };
  }
  if (format !== 'pdf') throw new TypeError(`renderInvoice: unknown format ${String(format)}`);
  const { seller, account } = parties(invoice, options);
  const doc = newPdf(`Invoice ${invoice.account_id} ${invoice.month}`, seller, pdfDate(invoice));
  heading(doc, seller, 'Invoice', [
    ['Account', account],
    ['Month', `${invoice.month} (UTC)`],
    ['Status', statusText(invoice)],
  ]);
  tableRow(doc, INVOICE_TABLE.map((c) => c.title), true);
  for (const line of invoice.lines) {
    tableRow(doc, [itemText(line), line.model, line.section === 'refund' || line.section === 'adjustment' ? '' : line.quantity, unitPriceText(line), line.amount], false);
  }
  doc.moveDown(0.5);
  tableRow(doc, ['Total', '', '', 'credits', invoice.total.credits], true);
  const values = invoice.total.credit_values ?? [];
  if (invoice.total.currency !== '') tableRow(doc, ['', '', '', invoice.total.currency, invoice.total.amount], true);
  else for (const v of values) tableRow(doc, ['', '', '', v.currency, v.amount], true);
  doc.moveDown(1);
  const rates = values.length === 0
    ? `The ${invoice.total.currency} total converts the credit total at the catalog's rate.`
    : `Converted at ${values.map((v) => `${v.credit_value} (${v.micro_credits} micro-credits)`).join('; ')}, each amount at the credit value it was priced with.`;
  doc.font('Helvetica').fontSize(8).text(
    'Amounts in credits, exact to the micro-credit; each request is rounded up once to a whole micro-credit (the Rounding line); '
    + 'requests whose charge is not the sum of their lines are shown whole (Requests not itemised). ' + pdfText(rates),
    doc.page.margins.left, doc.y, { width: 495 },
  );
  return { body: pdfBytes(doc), contentType: CONTENT_TYPES.pdf, filename };
}

/**
 * A statement as a file.
 * - `csv`: header row STATEMENT_COLUMNS and one data row (RFC 4180, CRLF, UTF-8 without BOM).
 * - `pdf`: A4, seller heading, account, month, status, then opening balance, top-ups, grants,
 *   usage, refunds, adjustments, closing balance in credits, and the credit's value in the
 *   catalog's currency. Deterministic as renderInvoice.
 * Filename `statement-<account_id>-<YYYY-MM>.<ext>`.
 */
export function renderStatement(statement: Statement, format: DocumentFormat, options: RenderOptions = {}): RenderedFile {
  const filename = `statement-${fileSafe(statement.account_id)}-${statement.month}.${EXTENSIONS[format]}`;
  if (format === 'csv') {
    const row = STATEMENT_COLUMNS.map((c) => statement[c] ?? '');
    return { body: Buffer.from(csvText([row], STATEMENT_COLUMNS), 'utf8'), contentType: CONTENT_TYPES.csv, filename };
  }
  if (format !== 'pdf') throw new TypeError(`renderStatement: unknown format ${String(format)}`);
  const { seller, account } = parties(statement, options);
  const doc = newPdf(`Statement ${statement.account_id} ${statement.month}`, seller, pdfDate(statement));
  heading(doc, seller, 'Statement of account', [
    ['Account', account],
    ['Month', `${statement.month} (UTC)`],
    ['Status', statusText(statement)],
  ]);
  const rows: [string, string][] = [
    ['Opening balance', statement.opening_balance],
    ['Top-ups', statement.top_ups],
    ['Grants', statement.grants],
    ['Usage', /^0(\.0+)?$/.test(statement.usage) ? statement.usage : `-${statement.usage}`],
    ['Refunds', statement.refunds],
    ['Adjustments', statement.adjustments],
    ['Closing balance', statement.closing_balance],
  ];
  doc.fontSize(10);
  for (const [label, value] of rows) {
    const y = doc.y;
    const bold = label.endsWith('balance');
    doc.font(bold ? 'Helvetica-Bold' : 'Helvetica').text(label, 50, y, { width: 200, lineBreak: false });
    doc.text(`${pdfText(value)} credits`, 250, y, { width: 200, align: 'right' });
  }
  doc.moveDown(1);
  doc.font('Helvetica').fontSize(8).text(
    `Credit value: ${pdfText(statement.credit_value)}${/[a-z]/i.test(statement.credit_value) ? '' : ` ${pdfText(statement.currency)} per credit`}. `
    + 'Closing balance = opening balance + top-ups + grants - usage + refunds + adjustments.',
    50, doc.y, { width: 495 },
  );
  return { body: pdfBytes(doc), contentType: CONTENT_TYPES.pdf, filename };
}

// ---------------------------------------------------------------------------------------------
// The month's export

/** One export record: InvoiceLine's fields in LINE_COLUMNS order (JSON Lines keeps this key order). */
export type ExportRecord = Pick<InvoiceLine, (typeof LINE_COLUMNS)[number]>;

function record(line: InvoiceLine): ExportRecord {
  // Rebuilt field by field: a fixed key order whatever order the producer built its objects in.
  return {
    account_id: line.account_id,
    month: line.month,
    section: line.section,
    source_month: line.source_month,
    model: line.model,
    dimension: line.dimension,
    quantity: line.quantity,
    unit_price: line.unit_price,
    amount: line.amount,
    amount_micros: line.amount_micros,
  };
}

const STRING = { type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' } as const;
const INT64 = { type: 'INT64', repetition_type: 'REQUIRED' } as const;
/** Parquet types: integer counts as INT64, money and prices as exact decimal text (never FLOAT/DOUBLE). */
const PARQUET_TYPES: Record<(typeof LINE_COLUMNS)[number], typeof STRING | typeof INT64> = {
  account_id: STRING, month: STRING, section: STRING, source_month: STRING, model: STRING,
  dimension: STRING, quantity: INT64, unit_price: STRING, amount: STRING, amount_micros: INT64,
};

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * The first line whose `quantity` or `amount_micros` a Parquet export cannot hold (its INT64
 * columns: −2^63 … 2^63 − 1), or undefined. The export route answers 400 for it before sending
 * anything (CSV and JSON carry any integer as text); a line that large is ~9.2 trillion credits.
 */
export function parquetOutOfRange(lines: readonly InvoiceLine[]): { line: InvoiceLine; column: 'quantity' | 'amount_micros' } | undefined {
  for (const line of lines) {
    for (const column of ['quantity', 'amount_micros'] as const) {
      const v = BigInt(line[column]);
      if (v < INT64_MIN || v > INT64_MAX) return { line, column };
    }
  }
  return undefined;
}

function* parquetChunks(lines: readonly InvoiceLine[]): Generator<Buffer> {
  const bad = parquetOutOfRange(lines);
  if (bad !== undefined) throw new RangeError(`parquet export: ${bad.column} ${bad.line[bad.column]} of account ${bad.line.account_id} is beyond INT64`);
  const writer = new ByteWriter();
  // Hand each row group's bytes out and start the buffer over: the file is never whole in memory
  // (offsets in the footer use writer.offset, which keeps counting).
  const take = (): Buffer => {
    const out = Buffer.from(writer.getBytes());
    writer.index = 0;
    return out;
  };
  const pw = new ParquetWriter({
    writer,
    schema: [
      { name: 'root', num_children: LINE_COLUMNS.length },
      ...LINE_COLUMNS.map((name) => ({ name, ...PARQUET_TYPES[name] })),
    ],
    // fixed, versionless: a library upgrade must not change the bytes of an old month's export
    createdBy: 'tollgate',
  });
  for (let start = 0; start < lines.length; start += EXPORT_BATCH) {
    const batch = lines.slice(start, start + EXPORT_BATCH);
    pw.write({
      columnData: LINE_COLUMNS.map((name) => ({
        name,
        data: PARQUET_TYPES[name] === INT64 ? batch.map((l) => BigInt(l[name])) : batch.map((l) => l[name]),
      })),
      rowGroupSize: EXPORT_BATCH,
    });
    yield take();
  }
  void pw.finish();
  yield take();
}

/**
 * The export as a sequence of chunks, EXPORT_BATCH lines at a time (no chunk holds more), in the
 * order of `lines`:
 * - `csv`: RFC 4180, CRLF, UTF-8 without BOM, header LINE_COLUMNS, formula-safe cells (csvSafe);
 * - `json`: JSON Lines (one object per line, `\n`, keys in LINE_COLUMNS order, every value a string
 *   as in InvoiceLine); an empty month is an empty body;
 * - `parquet`: one row group per EXPORT_BATCH lines, REQUIRED columns, `quantity` and
 *   `amount_micros` INT64, everything else UTF-8 strings (money as exact decimal text), SNAPPY,
 *   created_by `tollgate`, no timestamps.
 * Throws TypeError on a quantity or amount_micros that is not integer text (parquet), or an unknown format.
 */
export function* exportChunks(lines: readonly InvoiceLine[], format: ExportFormat): Generator<Buffer> {
  switch (format) {
    case 'csv':
      if (lines.length === 0) yield Buffer.from(csvText([], LINE_COLUMNS), 'utf8');
      for (let start = 0; start < lines.length; start += EXPORT_BATCH) {
        const rows = lines.slice(start, start + EXPORT_BATCH).map(lineCells);
        yield Buffer.from(csvText(rows, start === 0 ? LINE_COLUMNS : null), 'utf8');
      }
      return;
    case 'json':
      for (let start = 0; start < lines.length; start += EXPORT_BATCH) {
        const text = lines.slice(start, start + EXPORT_BATCH).map((l) => `${JSON.stringify(record(l))}\n`).join('');
        yield Buffer.from(text, 'utf8');
      }
      return;
    case 'parquet':
      yield* parquetChunks(lines);
      return;
    default:
      throw new TypeError(`exportChunks: unknown format ${String(format)}`);
  }
}

/** `tollgate-billing-YYYY-MM.<csv|jsonl|parquet>`, the export's download name. */
export function exportFilename(month: string, format: ExportFormat): string {
  return `tollgate-billing-${month}.${EXTENSIONS[format]}`;
}

/** The export's `content-type`: text/csv, application/x-ndjson (JSON Lines) or application/vnd.apache.parquet. */
export function exportContentType(format: ExportFormat): string {
  return CONTENT_TYPES[format];
}

/**
 * Every line of a month's export as one file (see exportChunks for each format). `month` names the
 * file (`tollgate-billing-YYYY-MM.<ext>`); the lines keep their own `month`. For big months send
 * exportStream instead: this joins every chunk into one Buffer.
 */
export function renderExport(lines: readonly InvoiceLine[], format: ExportFormat, month = lines[0]?.month ?? 'empty'): RenderedFile {
  return { body: Buffer.concat([...exportChunks(lines, format)]), contentType: exportContentType(format), filename: exportFilename(month, format) };
}

/** The export as a Node Readable of the same bytes as renderExport, produced a chunk at a time as the client reads. */
export function exportStream(lines: readonly InvoiceLine[], format: ExportFormat): Readable {
  return Readable.from(exportChunks(lines, format), { objectMode: false });
}

/** Ids go into filenames: keep them to a safe character set (account ids already are). */
function fileSafe(id: string): string {
  return id.replace(/[^A-Za-z0-9_.-]/g, '_');
}
