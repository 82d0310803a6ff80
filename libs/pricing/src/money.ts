// Money is an integer count of micro-credits, always a bigint. Decimal text is parsed digit by
// digit and never passes through a float, so "0.1" is exactly 100_000 micro-credits.

export const MICROS_PER_CREDIT = 1_000_000n;

/** Decimal places of a credit amount: one micro-credit is 0.000001 credit. */
export const CREDIT_DECIMALS = 6;

/** A decimal string or number that cannot be turned into an exact amount. */
export class MoneyError extends Error {
  override readonly name = 'MoneyError';
}

/** A plain decimal: optional sign, digits, optional fraction. No exponent, no spaces, no `_`. */
const DECIMAL_RE = /^([+-]?)(\d+)(?:\.(\d+))?$/;

/**
 * An exact decimal as an integer and a power of ten: `value = units / 10^scale`.
 * Trailing fractional zeros are dropped, so `scale` is the smallest that represents the value.
 */
export interface ExactDecimal {
  readonly units: bigint;
  readonly scale: number;
}

/** Parses decimal text exactly; throws MoneyError on anything else (`1e3`, ` 1`, `.5`, `1.`). */
export function parseExactDecimal(v: string): ExactDecimal {
  const m = DECIMAL_RE.exec(v);
  if (m === null) {
    throw new MoneyError(`${JSON.stringify(v)} is not a decimal number (expected e.g. "12.5" or "3")`);
  }
  const sign = m[1] === '-' ? -1n : 1n;
  const whole = m[2] ?? '0';
  const frac = (m[3] ?? '').replace(/0+$/, '');
  const units = sign * BigInt(whole + frac);
  return { units, scale: frac.length };
}

/**
 * 2^28 credits (268,435,456): below it, doubles are under 10^-7 apart, so a JSON number keeps
 * both what a client meant to the µc and a 7th decimal (which is then refused, as in a string);
 * from 2^29 on a 7th decimal can vanish into the nearest 6-decimal amount, and from 2^33 two
 * µc amounts share a double.
 */
export const EXACT_NUMBER_CREDITS = 2 ** 28;

/**
 * Parses decimal text into an integer number of `10^-scale` units, exactly.
 * `parseDecimal("12.34", 6)` is `12_340_000n`. More fractional digits than `scale` are accepted
 * only when the extra digits are zeros; otherwise the value is not representable and it throws.
 */
export function parseDecimal(v: string, scale: number): bigint {
  if (!Number.isSafeInteger(scale) || scale < 0) {
    throw new MoneyError(`scale must be a non-negative integer, got ${scale}`);
  }
  const d = parseExactDecimal(v);
  if (d.scale > scale) {
    throw new MoneyError(
      `${JSON.stringify(v)} has more than ${scale} decimal place${scale === 1 ? '' : 's'}`,
    );
  }
  return d.units * 10n ** BigInt(scale - d.scale);
}

/**
 * Credits (decimal string or number) → micro-credits; throws MoneyError with one sentence that
 * names the value and the rule (at most 6 decimal places, a plain decimal, a finite number). A number is read through its shortest
 * round-trip text (`String(0.1)` is "0.1"), so no binary float error reaches the result;
 * non-finite numbers and numbers whose text needs an exponent (1e21, 1e-7) are rejected. From
 * `EXACT_NUMBER_CREDITS` (2^28) on, a double no longer tells every amount a client may have sent
 * apart (a 7th decimal, then the µc itself), so a number there with a fraction is refused (send
 * the amount as a decimal string); a whole number is exact (up to the 2^53 − 1 µc bound).
 */
export function parseCredits(v: string | number): bigint {
  let text: string;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new MoneyError(`credit amount must be finite, got ${v}`);
    if (Math.abs(v) >= EXACT_NUMBER_CREDITS && !Number.isInteger(v)) {
      // Not the number's text in the message: it is the double's, maybe not what was sent.
      throw new MoneyError(`a credit amount of ${EXACT_NUMBER_CREDITS} credits or more with a fraction is not exact as a JSON number: send it as a decimal string`);
    }
    text = String(v);
    if (/e/i.test(text)) {
      // Below 1e-6 a number's text has an exponent: it has more decimals than credits keep.
      if (Math.abs(v) < 1) throw new MoneyError(`credit amount ${text} has more than ${CREDIT_DECIMALS} decimal places`);
      // No amount anywhere may pass 2^53 − 1 µc (the largest every stage holds exactly).
      throw new MoneyError(`credit amount ${text} is out of range: amounts are within ±${formatCredits(2n ** 53n - 1n)} credits`);
    }
  } else if (typeof v === 'string') {
    text = v;
  } else {
    throw new MoneyError(`credit amount must be a string or a number, got ${typeof v}`);
  }
  // parseDecimal's messages already say what is wrong and the limit (`"1.1234567" has more than
  // 6 decimal places`); callers prefix the field name.
  return parseDecimal(text, CREDIT_DECIMALS);
}

/** Micro-credits → credits as decimal text: "12.345678", "-0.5", "3". */
export function formatCredits(micros: bigint): string {
  const negative = micros < 0n;
  const abs = negative ? -micros : micros;
  const whole = abs / MICROS_PER_CREDIT;
  const frac = (abs % MICROS_PER_CREDIT).toString().padStart(CREDIT_DECIMALS, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${frac === '' ? '' : `.${frac}`}`;
}

/**
 * Micro-credits → a JS number of credits, for display JSON only (never for arithmetic).
 * Goes through the decimal text, so the result is the double nearest the exact value.
 */
export function creditsToNumber(micros: bigint): number {
  return Number(formatCredits(micros));
}

/**
 * An account's balance as the API shows it (`GET /v1/credits`, the admin account view), each of
 * balance, held and available three ways: a JS number of credits for display
 * (`*_credits`, rounds past 2^53 µc), exact µc as a decimal string (`*_micro_credits`) and
 * exact credits as decimal text (`balance`, `held`, `available`). Input in µc.
 */
export function balanceView(b: { balance: bigint; held: bigint; available: bigint }): {
  balance_credits: number; held_credits: number; available_credits: number;
  balance_micro_credits: string; held_micro_credits: string; available_micro_credits: string;
  balance: string; held: string; available: string;
} {
  return {
    balance_credits: creditsToNumber(b.balance), held_credits: creditsToNumber(b.held), available_credits: creditsToNumber(b.available),
    balance_micro_credits: b.balance.toString(), held_micro_credits: b.held.toString(), available_micro_credits: b.available.toString(),
    balance: formatCredits(b.balance), held: formatCredits(b.held), available: formatCredits(b.available),
  };
}

/** ceil(a / b) for a ≥ 0, b > 0. */
export function ceilDiv(a: bigint, b: bigint): bigint {
  if (b <= 0n) throw new RangeError('ceilDiv: divisor must be positive');
  if (a < 0n) throw new RangeError('ceilDiv: dividend must be non-negative');
  return (a + b - 1n) / b;
}
