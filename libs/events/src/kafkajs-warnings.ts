/**
 * kafkajs 2.2.4 arms its request queue's pending-request check with
 * `throttledUntil - Date.now()`, where `throttledUntil` is -1 until a broker throttles the
 * client: a delay of about minus the epoch in ms. Node 24 runs such a timer after 1 ms, which is
 * what kafkajs means, but prints `TimeoutNegativeWarning: -1796094548906 is a negative number`
 * on stderr for it (kafkajs issue #1751; its fix is not in a release): at the first broker
 * connection, as Node warns of a negative timer once per process. An operator reading a gateway's stderr cannot tell that line from a fault of ours,
 * so the processes that use Kafka drop exactly that warning and keep every other one.
 */

/**
 * Whether `warning` is kafkajs's negative-delay timer warning: named `TimeoutNegativeWarning`
 * and raised from kafkajs's `network/requestQueue` (its stack). The same warning raised by any
 * other code is not.
 */
export function isKafkajsTimerWarning(warning: Error): boolean {
  return warning.name === 'TimeoutNegativeWarning'
    && /[\\/]kafkajs[\\/]src[\\/]network[\\/]requestQueue[\\/]/.test(warning.stack ?? '');
}

let installed = false;

/**
 * Drops kafkajs's negative-delay timer warning (`isKafkajsTimerWarning`) from this process's
 * warning output: the `warning` listeners present now (Node's own printer, unless the process
 * replaced it) are moved behind a filter that hands them every other warning unchanged.
 * Listeners added later see every warning. Idempotent; `KafkaLog`'s constructor calls it.
 */
export function dropKafkajsTimerWarning(): void {
  if (installed) return;
  installed = true;
  const previous = process.listeners('warning');
  for (const listener of previous) process.removeListener('warning', listener);
  process.on('warning', (warning) => {
    if (isKafkajsTimerWarning(warning)) return;
    for (const listener of previous) listener.call(process, warning);
  });
}
