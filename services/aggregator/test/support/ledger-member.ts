// A ledger consumer member in its own process, for the crash test of ledger-batch.test.ts:
// consumes the group until the store's position reaches `--until`, then kills itself with
// SIGKILL (no stop(), so the background offset commit never runs: nothing is committed).
//   node ledger-member.ts --kafka <brokers> --redis <url> --topic-prefix <p> --redis-prefix <p> --group <g> --until <offset>
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { Redis } from 'ioredis';
import { KafkaLog } from '@tollgate/events';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { RedisBalanceStore } from '@tollgate/ledger';
import { startLedgerConsumer } from '@tollgate/aggregator';

const { values: a } = parseArgs({
  options: {
    kafka: { type: 'string' }, redis: { type: 'string' }, 'topic-prefix': { type: 'string' }, 'redis-prefix': { type: 'string' },
    group: { type: 'string' }, until: { type: 'string' },
  },
});
const kafka = new Kafka({ clientId: 'test-ledger-member', brokers: a.kafka!.split(','), logLevel: logLevel.NOTHING });
const log = new KafkaLog({
  kafka, topicPrefix: a['topic-prefix']!, spoolDir: mkdtempSync(join(tmpdir(), 'tollgate-ledger-member-')),
  consumerCommitIntervalMs: 3_600_000, logger: { warn: () => {}, error: () => {} },
});
const store = new RedisBalanceStore({ redis: new Redis(a.redis!), prefix: a['redis-prefix']!, requireReady: true });
const until = BigInt(a.until!);
await startLedgerConsumer({
  log, balances: store, keys: new MemoryKeyDirectory(), group: a.group!,
  onApplied: (batch) => {
    if (batch.some((e) => e.offset >= until)) {
      process.stdout.write('applied\n');
      process.kill(process.pid, 'SIGKILL');
    }
  },
});
