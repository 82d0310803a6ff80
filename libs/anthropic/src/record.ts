/** A plain JSON object (not null, not an array): how the protocol code tells objects apart. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
