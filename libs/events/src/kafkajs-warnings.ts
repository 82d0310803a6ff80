/**
 * kafkajs 2.2.4 arms its request queue's pending-request check with
 * `throttledUntil - Date.now()`, where `throttledUntil` is -1 until a broker throttles the
 * client: a delay of about minus the epoch in ms. Node 24 runs such a timer after 1 ms, which is
 * what kafkajs means, but prints `TimeoutNegativeWarning: -1796094548906 is a negative number`
 * on stderr for it (kafkajs issue #1751; its fix is not in a release): at the first broker
 * connection, as Node warns of a negative timer once per process. An operator reading a
 * gateway's stderr cannot tell that line from a fault of ours, so the processes that use Kafka
 * drop exactly that warning and keep every other one.
 */

const KAFKAJS_QUEUE = /[\\/]kafkajs[\\/]src[\\/]network[\\/]requestQueue[\\/]/;

let installed = false;

/**
 * Drops kafkajs's negative-delay timer warning before it is emitted: `process.emitWarning` is
 * wrapped so that a `TimeoutNegativeWarning` whose call comes from kafkajs's
 * `network/requestQueue` (the call's stack, read only for that warning type) goes nowhere; every
 * other call goes to Node's `emitWarning` unchanged. The `warning` listeners are not touched:
 * Node's printer, `--no-warnings`, `--trace-warnings`, `--throw-deprecation`, `once` listeners
 * and `removeListener` all behave as without it. Idempotent; `KafkaLog`'s constructor calls it
 * (a kafkajs client used before any `KafkaLog` exists is not covered), and so do bench/run.ts
 * and every bench command's `runMain` (bench/cli.ts).
 */
export function dropKafkajsTimerWarning(): void {
  if (installed) return;
  installed = true;
  const emitWarning = process.emitWarning as (this: NodeJS.Process, ...args: unknown[]) => void;
  process.emitWarning = function (this: NodeJS.Process, ...args: unknown[]): void {
    if (warningType(args[0], args[1]) === 'TimeoutNegativeWarning' && calledFromKafkajsQueue()) return;
    emitWarning.apply(this, args);
  } as typeof process.emitWarning;
}

/** The type `process.emitWarning(warning, typeOrOptions)` gives a warning (Node's rules). */
function warningType(warning: unknown, typeOrOptions: unknown): string {
  if (warning instanceof Error) return warning.name;
  if (typeof typeOrOptions === 'string') return typeOrOptions;
  if (typeOrOptions !== null && typeof typeOrOptions === 'object' && typeof (typeOrOptions as { type?: unknown }).type === 'string') {
    return (typeOrOptions as { type: string }).type;
  }
  return 'Warning';
}

/** Whether kafkajs's request queue is on the current call stack (at most 30 frames deep). */
function calledFromKafkajsQueue(): boolean {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 30;
  const probe: { stack?: string } = {};
  Error.captureStackTrace(probe);
  Error.stackTraceLimit = limit;
  return KAFKAJS_QUEUE.test(probe.stack ?? '');
}
