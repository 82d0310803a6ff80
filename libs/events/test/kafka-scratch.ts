// A scratch corner of the test Kafka for suites that run several KafkaLogs (members of one
// group, a producer beside them): one client, a fresh topic prefix, spool directories, and a
// cleanup that deletes the topics and the directories.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { DEAD_LETTER_TOPIC, TOPICS } from '@tollgate/events';

/** A KafkaLog logger that says nothing (the suites assert on what they see, not on log lines). */
export const quiet = { warn: () => {}, error: () => {} };

/**
 * `spools` spool directories under the OS tmpdir and a topic prefix `t-<8 hex>.` on `brokers`
 * (comma list); `cleanup()` deletes the prefix's topics (errors ignored) and the directories.
 * `level`: kafkajs' own logging (NOTHING for a suite that provokes errors on purpose).
 */
export async function kafkaScratch(brokers: string, spools: number, level: logLevel = logLevel.ERROR): Promise<{ kafka: Kafka; prefix: string; spoolDirs: string[]; cleanup(): Promise<void> }> {
  const kafka = new Kafka({ clientId: 'tollgate-events-test', brokers: brokers.split(','), logLevel: level });
  const prefix = `t-${randomUUID().slice(0, 8)}.`;
  const spoolDirs = await Promise.all(Array.from({ length: spools }, () => mkdtemp(join(tmpdir(), 'tollgate-spool-'))));
  return {
    kafka, prefix, spoolDirs,
    async cleanup() {
      const cleaner = kafka.admin();
      await cleaner.connect();
      await cleaner.deleteTopics({ topics: [...TOPICS.map((topic) => prefix + topic), prefix + DEAD_LETTER_TOPIC] }).catch(() => {});
      await cleaner.disconnect();
      for (const d of spoolDirs) await rm(d, { recursive: true, force: true });
    },
  };
}
