// Exact non-negative fractions of bigints, for pricing with decimal multipliers (0.5, 1.1, 0.8)
// without floats. Every denominator that occurs is a power of ten (prices are integers, tokens
// are priced per 10^6, factors are decimal strings), so every value has an exact decimal text.

export interface Rational {
  readonly num: bigint;
  readonly den: bigint;
}

export const ZERO: Rational = Object.freeze({ num: 0n, den: 1n });
export const ONE: Rational = Object.freeze({ num: 1n, den: 1n });

function gcd(a: bigint, b: bigint): bigint {
  // No destructuring swap: it allocated an array per step on the pricing hot path.
  while (b !== 0n) {
    const r = a % b;
    a = b;
    b = r;
  }
  return a < 0n ? -a : a;
}

/** num/den reduced; den > 0. */
export function rat(num: bigint, den = 1n): Rational {
  if (den <= 0n) throw new RangeError('rational: denominator must be positive');
  // Whole numbers are already reduced (gcd(num, 1) = 1): the common case of prices and counts.
  if (den === 1n) return { num, den };
  const g = gcd(num, den);
  return g > 1n ? { num: num / g, den: den / g } : { num, den };
}

export function add(a: Rational, b: Rational): Rational {
  return a.den === b.den ? rat(a.num + b.num, a.den) : rat(a.num * b.den + b.num * a.den, a.den * b.den);
}

export function mul(a: Rational, b: Rational): Rational {
  return rat(a.num * b.num, a.den * b.den);
}

export function cmp(a: Rational, b: Rational): number {
  const l = a.num * b.den;
  const r = b.num * a.den;
  return l < r ? -1 : l > r ? 1 : 0;
}

/** ⌈a⌉ for a ≥ 0. */
export function ceil(a: Rational): bigint {
  if (a.num < 0n) throw new RangeError('rational: ceil of a negative value');
  return (a.num + a.den - 1n) / a.den;
}

/**
 * Exact decimal text ("79.2", "0.000001", "396000"). Denominators here are of the form 2^a·5^b;
 * any other (not produced by this library) prints as "num/den" rather than be rounded.
 */
export function toDecimal(a: Rational): string {
  const r = rat(a.num, a.den);
  if (r.den === 1n) return r.num.toString();
  let scale = 0;
  let pow = 1n;
  while (pow % r.den !== 0n) {
    pow *= 10n;
    scale++;
    if (scale > 200) return `${r.num}/${r.den}`;
  }
  const units = (r.num * pow) / r.den;
  const neg = units < 0n;
  const digits = (neg ? -units : units).toString().padStart(scale + 1, '0');
  const text = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`.replace(/\.?0+$/, '');
  return neg ? `-${text}` : text;
}
