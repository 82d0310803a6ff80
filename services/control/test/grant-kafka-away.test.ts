// A credit grant while Kafka is away: the ledger cannot apply it before Kafka returns, so the
// grant is answered 202 `pending` as soon as its event is safe in the spool, not after the
// ledger wait (applyTimeoutMs). A real KafkaLog whose broker refuses every connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KafkaLog } from '@tollgate/events';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore } from '@tollgate/ledger';
import { loadCatalogFile } from '@tollgate/pricing';
import { buildControl } from '../src/index.ts';
import { deadClient, quiet, spoolLines } from '../../../libs/events/test/spool-helpers.ts';

const TOKEN = 'admin-token-for-grant-kafka-away';

test('a credit grant while Kafka is known away is answered 202 pending once its event is spooled, without the ledger wait (applyTimeoutMs of 10 minutes); the retry with its reference too; the event is in the spool once', { timeout: 60_000 }, async () => {
  // Kind: a wait for an effect that cannot come. The grant waited applyTimeoutMs (10 s) for a
  // ledger that cannot see the event until Kafka returns: 13 s for the first answer, 10 s per retry.
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-grant-away-'));
  const log = new KafkaLog({ kafka: deadClient(), topicPrefix: 't-grant-away.', spoolDir, sendTimeoutMs: 1000, closeTimeoutMs: 200, logger: quiet() });
  const balances = new MemoryBalanceStore();
  const app = buildControl({
    keys: new MemoryKeyDirectory(), balances, log,
    catalog: loadCatalogFile(resolve(import.meta.dirname, '../../../libs/pricing/catalogs/cny.json')),
    adminToken: TOKEN, keyHashSecret: 'k'.repeat(32), applyTimeoutMs: 600_000,
  });
  try {
    const call = (method: 'GET' | 'POST', path: string, payload?: object) =>
      app.inject({ method, url: path, headers: { authorization: `Bearer ${TOKEN}` }, ...(payload ? { payload } : {}) });
    const account = (await call('POST', '/admin/v1/accounts', { name: 'away' })).json() as { id: string };
    assert.equal(log.reachable(), false, 'the account event\'s send failed: Kafka is known away');
    const grant = await call('POST', `/admin/v1/accounts/${account.id}/credits`, { credits: '2.5', reference: 'inv-away-1' });
    assert.equal(grant.statusCode, 202, grant.body);
    assert.deepEqual((({ balance_micro_credits, reference, duplicate, pending }) => ({ balance_micro_credits, reference, duplicate, pending }))(grant.json()),
      { balance_micro_credits: '0', reference: 'inv-away-1', duplicate: false, pending: true });
    const again = await call('POST', `/admin/v1/accounts/${account.id}/credits`, { credits: '2.5', reference: 'inv-away-1' });
    assert.equal(again.statusCode, 202, again.body);
    assert.deepEqual([again.json().duplicate, again.json().pending], [true, true]);
    const ledger = (await spoolLines(spoolDir)).map((l) => JSON.parse(l) as { topic: string; event: { amount_micros?: string; reference?: string } }).filter((r) => r.topic === 'ledger');
    assert.deepEqual(ledger.map((r) => [r.event.amount_micros, r.event.reference]), [['2500000', 'inv-away-1']]);
  } finally {
    await app.close();
    await log.close();
    await rm(spoolDir, { recursive: true, force: true });
  }
});
