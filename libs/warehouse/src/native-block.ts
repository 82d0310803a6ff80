// One block of ClickHouse's Native format, written column by column: what the usage insert sends
// a ClickHouse server. The format (https://clickhouse.com/docs/interfaces/formats/Native, the
// layout a server's own `FORMAT Native` output has over HTTP): the column and row counts as
// unsigned LEB128, then each column's name and type (LEB128 length + UTF-8) followed by its
// values for every row, little-endian:
//   Int32/UInt8/UInt16/UInt32/Int64   fixed width; Bool one byte 0/1; DateTime64(3) an Int64 of ms
//   String                            LEB128 byte length + UTF-8 bytes
//   Nullable(T)                       one byte per row (1 = NULL), then T for every row (a default where NULL)
//   Array(T)                          a UInt64 per row: the running total of elements, then T for every element
//   Map(K, V)                         as Array(Tuple(K, V)): the running totals, then every key, then every value
//   LowCardinality(T)                 a UInt64 serialization version (1) before the column's data (before an
//                                     Array's totals when nested), then, when there are values: a UInt64 of
//                                     flags and index width, the dictionary (UInt64 count + T's keys; the
//                                     default '' first, NULL before it for Nullable) and the rows' indexes
//                                     (UInt64 count + one index each, 1, 2 or 4 bytes)
// The LowCardinality layout is the one a server's own Native output has (ClickHouse's
// SerializationLowCardinality, "SharedDictionariesWithAdditionalKeys"): each block carries its own
// dictionary as "additional keys".
//
// Written here rather than taken from a library: @clickhouse/client encodes only text formats
// (its own guide for binary formats is code to generate, not a package), and no maintained npm
// package writes Native blocks.

/** 2^32, to split a non-negative safe integer into two 32-bit halves. */
const TWO_32 = 4_294_967_296;
/** Decimal text of at most 15 digits, no sign: below 2^53, read exactly by Number(). */
const SHORT_DECIMAL_RE = /^\d{1,15}$/;

/**
 * A growing buffer of Native-format values: one part of a column (its values, a Nullable's null
 * map, an Array's running totals), or a whole block (`nativeBlock`). The value writers append
 * in the layout of their type (above). Fixed-width writers do not check the buffer's room:
 * `reserve(bytes)` first (a string, a LEB128 number and `bytes` make their own room). Values
 * must already be in range for their type: an out-of-range number is stored modulo its width,
 * not refused.
 */
export class NativeWriter {
  #buf: Buffer;
  #view: DataView;
  #pos = 0;

  /** `bytesHint`: the expected size (the buffer grows by doubling past it). */
  constructor(bytesHint = 64 * 1024) {
    this.#buf = Buffer.allocUnsafe(Math.max(64, bytesHint));
    this.#view = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
  }

  /** Makes room for `bytes` more bytes of fixed-width values. */
  reserve(bytes: number): void {
    if (this.#pos + bytes <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#pos + bytes));
    this.#buf.copy(next, 0, 0, this.#pos);
    this.#buf = next;
    this.#view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  /** Appends bytes as they are (a part written by another NativeWriter). */
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
  }

  /** Unsigned LEB128 (a length or count; non-negative safe integer). */
  varUInt(n: number): void {
    this.reserve(10);
    while (n >= 0x80) {
      this.#buf[this.#pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.#buf[this.#pos++] = n;
  }

  /** A String value: its UTF-8 byte length (LEB128), then the bytes. `s` must be well-formed UTF-16. */
  string(s: string): void {
    const length = s.length;
    // At most 3 bytes per UTF-16 unit, so up to 42 units the length fits in one LEB128 byte
    // and the text goes first, after a byte left for its length: ASCII byte by byte (most
    // values are short ids and names; a loop beats Buffer#write's call for those), anything
    // else through Buffer#write.
    this.reserve(length * 3 + 10);
    const buf = this.#buf;
    if (length <= 42) {
      const start = this.#pos + 1;
      let i = 0;
      for (; i < length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[start + i] = c;
      }
      const n = i === length ? length : buf.write(s, start, 'utf8');
      buf[this.#pos] = n;
      this.#pos = start + n;
      return;
    }
    this.varUInt(Buffer.byteLength(s, 'utf8'));
    this.#pos += buf.write(s, this.#pos, 'utf8');
  }

  /** UInt8 (also Bool: 0 or 1, and a Nullable's null map). Unchecked room: `reserve` first. */
  uint8(v: number): void {
    this.#buf[this.#pos++] = v;
  }

  /** UInt16. Unchecked room: `reserve` first. */
  uint16(v: number): void {
    this.#view.setUint16(this.#pos, v, true);
    this.#pos += 2;
  }

  /** UInt32. Unchecked room: `reserve` first. */
  uint32(v: number): void {
    this.#view.setUint32(this.#pos, v, true);
    this.#pos += 4;
  }

  /** Int32. Unchecked room: `reserve` first. */
  int32(v: number): void {
    this.#view.setInt32(this.#pos, v, true);
    this.#pos += 4;
  }

  /** UInt64 from a non-negative safe integer (an Array's or Map's running total). Unchecked room: `reserve` first. */
  uint64(v: number): void {
    this.#view.setUint32(this.#pos, v % TWO_32, true);
    this.#view.setUint32(this.#pos + 4, Math.floor(v / TWO_32), true);
    this.#pos += 8;
  }

  /** Int64 from a safe integer (DateTime64(3) as epoch ms). Unchecked room: `reserve` first. */
  int64(v: number): void {
    if (v >= 0) this.uint64(v);
    else {
      this.#view.setBigInt64(this.#pos, BigInt(v), true);
      this.#pos += 8;
    }
  }

  /**
   * Int64 from integer decimal text already checked to fit (µc, log offsets); short
   * non-negative text skips the BigInt. Unchecked room: `reserve` first.
   */
  int64Text(v: string): void {
    if (v.length <= 15 && SHORT_DECIMAL_RE.test(v)) this.uint64(Number(v));
    else {
      this.#view.setBigInt64(this.#pos, BigInt(v), true);
      this.#pos += 8;
    }
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#pos;
  }

  /** What was written (a view of the buffer: write no more after). */
  finish(): Buffer {
    return this.#buf.subarray(0, this.#pos);
  }
}

/** One column of a block: its name, its ClickHouse type (e.g. `Nullable(UInt32)`), its parts in order. */
export interface NativeColumn {
  name: string;
  type: string;
  /** the column's bytes for every row, in the order its type lays them out (a Nullable: null map, then values) */
  parts(): readonly NativeWriter[];
}

/** One Native block of `rows` rows: the counts, then each column's name, type and parts (`parts()` called once each). */
export function nativeBlock(rows: number, columns: readonly NativeColumn[]): Buffer {
  const parts = columns.map((c) => c.parts());
  let size = 20;
  columns.forEach((c, i) => {
    size += 20 + c.name.length * 3 + c.type.length;
    for (const p of parts[i]!) size += p.length;
  });
  const w = new NativeWriter(size);
  w.varUInt(columns.length);
  w.varUInt(rows);
  columns.forEach((c, i) => {
    w.string(c.name);
    w.string(c.type);
    for (const p of parts[i]!) w.bytes(p.finish());
  });
  return w.finish();
}

/** The LowCardinality serialization version written before a column's data (SharedDictionariesWithAdditionalKeys). */
export const LOW_CARDINALITY_VERSION = 1;
/**
 * The part a column with `count` LowCardinality streams starts with: LOW_CARDINALITY_VERSION for
 * each (one for LowCardinality(T) and Array(LowCardinality(T)), two for a Map of two), before
 * any totals or data.
 */
export function lowCardinalityVersions(count: number): NativeWriter {
  const w = new NativeWriter(8 * count);
  for (let i = 0; i < count; i++) w.uint64(LOW_CARDINALITY_VERSION);
  return w;
}

/** Flags of a LowCardinality block: its dictionary is in the block (HasAdditionalKeys) and replaces the last one (NeedUpdateDictionary). */
const LOW_CARDINALITY_FLAGS = (1 << 9) | (1 << 10);

/**
 * The values of a LowCardinality(String) or LowCardinality(Nullable(String)) column (or the
 * elements of an Array of one), kept as a dictionary and an index per value: a value met before
 * costs a Map lookup, not its bytes (most usage columns repeat a handful of values: models,
 * status, price version). `writeData` writes them after the caller wrote LOW_CARDINALITY_VERSION.
 */
export class LowCardinalityValues {
  readonly #nullable: boolean;
  readonly #index = new Map<string, number>();
  readonly #keys: string[];
  readonly #rows: number[] = [];

  /** `nullable`: LowCardinality(Nullable(String)) (index 0 is NULL, 1 the default ''); else index 0 is ''. */
  constructor(nullable: boolean) {
    this.#nullable = nullable;
    this.#keys = nullable ? ['', ''] : [''];
    this.#index.set('', nullable ? 1 : 0);
  }

  /** One value. Throws TypeError for a value that is no string (or null in a column that is not Nullable). */
  add(v: string | null): void {
    if (v === null) {
      if (!this.#nullable) throw new TypeError('null in a column that is not Nullable');
      this.#rows.push(0);
      return;
    }
    let k = this.#index.get(v);
    if (k === undefined) {
      if (typeof v !== 'string') throw new TypeError(`expected a string, got ${typeof v}`);
      k = this.#keys.length;
      this.#keys.push(v);
      this.#index.set(v, k);
    }
    this.#rows.push(k);
  }

  /** `writeData` into a writer of its own: the part after the versions (and an Array's or Map's totals). */
  dataPart(): NativeWriter {
    const w = new NativeWriter(64 + this.#rows.length * 4);
    this.writeData(w);
    return w;
  }

  /** The block's flags, dictionary and indexes; nothing when no value was added (an Array of empty arrays). */
  writeData(w: NativeWriter): void {
    const rows = this.#rows;
    if (rows.length === 0) return;
    const keys = this.#keys;
    const width = keys.length <= 0x100 ? 0 : keys.length <= 0x10000 ? 1 : 2;
    w.reserve(16);
    w.uint64(LOW_CARDINALITY_FLAGS | width);
    w.uint64(keys.length);
    for (const k of keys) w.string(k);
    w.reserve(8 + rows.length * (1 << width));
    w.uint64(rows.length);
    if (width === 0) for (const k of rows) w.uint8(k);
    else if (width === 1) for (const k of rows) w.uint16(k);
    else for (const k of rows) w.uint32(k);
  }
}
