// `cluster-key-slot` (the slot function ioredis' Cluster client uses) ships no types.
declare module 'cluster-key-slot' {
  /** The Redis Cluster slot (0 … 16383) of a key: CRC16 of its `{hash tag}` (or of the whole key), mod 16384. */
  export default function calculateSlot(key: string | Buffer): number;
}
