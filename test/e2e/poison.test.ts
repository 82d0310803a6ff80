// Issue 6, item 1 (embedded mode): one bad value never stops the pipeline. Poison events are
// published straight into the in-process log, behind and between good events of other
// accounts; every good event must reach the warehouse and the balances to the micro-credit,
// each poison must sit in the quarantine with its reason, be counted, be listed by reconcile,
// and a journal holding poison must not keep the process from starting again. The HTTP edges
// refuse the same values with a 400 before they can become events. Item 10 (part): fifty
// parallel grants with one reference credit once and answer once 201.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { Journal, type AnyEvent } from '@tollgate/events';
import { ADMIN_TOKEN, admin, customer, settledBalance, startStack, type Stack } from '../support/tollgate.ts';
import { grantEvent as grant, usageEvent as usage } from '../support/events.ts';
import { spawn } from 'node:child_process';
import { childEnv } from '../support/services.ts';

let stack: Stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack.close(); });



const OUT_OF_RANGE = 'credits: not applied: the balance would leave ±9007199254.740991 credits (9007199254740991 micro-credits, 2^53 − 1, the bound every stage holds exactly)';
const HAIKU_10_IN_5_OUT = 10n * 24n + 5n * 120n; // 840 µc: haiku-4-5 input 24, output 120 µc/token

describe('poison in the embedded pipeline', () => {
  test('poison events between good ones of other accounts: good ones warehoused and applied exactly, each poison quarantined, counted, listed by reconcile', async () => {
    const a = await customer(stack.url, 1, 'poison-a'); // 1_000_000 µc
    const b = await customer(stack.url, 2, 'poison-b'); // 2_000_000 µc
    await a.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: '[[sim input=10 output=5]]' }] });

    const A = a.accountId;
    const B = b.accountId;
    const poison: Array<[string, unknown]> = [
      ['p-surrogate', usage('p-surrogate', B, { model: 'claude-haiku-4-5/\ud800', cost_micros: '5' })],
      ['credit:' + B + ':p-int64', grant(B, 'p-int64', '99999999999999999999999000000')],
      ['credit:' + B + ':p-2^53', grant(B, 'p-2^53', '9007199254740993')],
      ['p-negative', usage('p-negative', B, { input_tokens: -1, cost_micros: '7' })],
      ['p-unknown', { type: 'refund_all', event_id: 'p-unknown', account_id: B }],
      ['p-missing', { type: 'usage', event_id: 'p-missing', account_id: B }],
    ];
    const sequence: Array<{ topic: 'usage' | 'ledger'; event: unknown }> = [
      { topic: 'usage', event: poison[0]![1] },
      { topic: 'ledger', event: grant(B, 'good-top-up', '3000000') },
      { topic: 'ledger', event: poison[1]![1] },
      { topic: 'ledger', event: poison[2]![1] },
      { topic: 'usage', event: poison[3]![1] },
      { topic: 'usage', event: usage('g-b-1', B, { cost_micros: '1234' }) },
      { topic: 'usage', event: poison[4]![1] },
      { topic: 'usage', event: poison[5]![1] },
      { topic: 'usage', event: usage('g-a-1', A, { cost_micros: '100' }) },
    ];
    for (const s of sequence) await stack.tollgate.log.publish(s.topic, [{ event: s.event as AnyEvent }]);
    await stack.tollgate.drain();

    // Balances, exact: A = 1_000_000 − 840 − 100; B = 2_000_000 + 3_000_000 − 1_234.
    assert.equal(await settledBalance(stack, A), 1_000_000n - HAIKU_10_IN_5_OUT - 100n);
    assert.equal(await settledBalance(stack, B), 4_998_766n);
    // The warehouse holds every good event and none of the poison.
    const w = stack.tollgate.warehouse;
    assert.deepEqual(await w.usageEventIds({ accountId: B }), ['g-b-1']);
    assert.equal((await w.usageEventIds({ accountId: A })).includes('g-a-1'), true);
    assert.equal((await w.ledgerTotals(B)).amountMicros, 5_000_000n);
    assert.deepEqual(await w.balances().then((m) => [m.get(A), m.get(B)]), [999_060n, 4_998_766n]);

    // Each poison in the warehouse quarantine (group warehouse) and the ledger's, with its reason.
    const ids = poison.map(([id]) => id).sort();
    const inWarehouse = (await w.quarantined()).filter((q) => q.group === 'warehouse');
    assert.deepEqual(inWarehouse.map((q) => q.event_id).sort(), ids);
    const reasons = Object.fromEntries(inWarehouse.map((q) => [q.event_id, q.reason]));
    assert.equal(reasons['p-surrogate'], 'model: must be well-formed Unicode (it contains a lone surrogate)');
    assert.equal(reasons[`credit:${B}:p-int64`], 'amount_micros: must be within ±9007199254740991 micro-credits (2^53 − 1)');
    assert.equal(reasons[`credit:${B}:p-2^53`], 'amount_micros: must be within ±9007199254740991 micro-credits (2^53 − 1)');
    assert.equal(reasons['p-negative'], 'input_tokens: Too small: expected number to be >=0');
    assert.equal(reasons['p-unknown'], 'unknown event type "refund_all"');
    assert.match(reasons['p-missing']!, /^ts: /);
    assert.deepEqual((await stack.tollgate.balances.quarantined()).map((q) => q.event_id).sort(), ids);
    // The ledger's records also reach the warehouse, by the log's dead letters: they outlive a restart.
    assert.deepEqual((await w.quarantined()).filter((q) => q.group === 'ledger').map((q) => q.event_id).sort(), ids);

    // Counted: six per group, all invalid_event.
    const scrape = await stack.tollgate.metrics.scrape();
    assert.match(scrape, /tollgate_events_quarantined_total\{group="warehouse",reason="invalid_event"\} 6\n/);
    assert.match(scrape, /tollgate_events_quarantined_total\{group="ledger",reason="invalid_event"\} 6\n/);

    // Reconcile: in agreement, the poison listed by id (once per group that set it aside).
    const rec = await admin<{ ok: boolean; quarantined: Array<{ event_id: string; group: string }> }>(stack.url, 'GET', '/ops/v1/reconcile?timeout_ms=5000');
    assert.equal(rec.status, 200);
    assert.equal(rec.json.ok, true);
    assert.deepEqual(rec.json.quarantined.filter((q) => q.group === 'warehouse').map((q) => q.event_id).sort(), ids);
    assert.deepEqual(rec.json.quarantined.filter((q) => q.group === 'ledger').map((q) => q.event_id).sort(), ids);

    // Traffic still flows behind the poison.
    await b.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: '[[sim input=10 output=5]]' }] });
    assert.equal(await settledBalance(stack, B), 4_998_766n - HAIKU_10_IN_5_OUT);
  });

  test('a process killed with poison in its journal starts again: good events recovered, poison quarantined by the live consumers (groups ledger and warehouse)', async () => {
    const a = await customer(stack.url, 1, 'journal-a');
    await stack.tollgate.close();
    // What a killed process leaves: a journal holding a good event and poison.
    const journal = new Journal(join(stack.dataDir, 'journal'));
    journal.append([
      { topic: 'usage', event: usage('j-surrogate', a.accountId, { model: 'x\ud800', cost_micros: '9' }), headers: {} },
      { topic: 'usage', event: usage('j-good', a.accountId, { cost_micros: '50' }), headers: {} },
      { topic: 'ledger', event: grant(a.accountId, 'j-huge', '99999999999999999999999000000'), headers: {} },
    ], 3);
    journal.close();
    await stack.restart();

    assert.equal(await settledBalance(stack, a.accountId), 1_000_000n - 50n);
    // The journal's records go through the same consumers as live events (adapters.ts recoverJournal).
    const q = (await stack.tollgate.warehouse.quarantined()).filter((r) => r.event_id === 'j-surrogate' || r.event_id === `credit:${a.accountId}:j-huge`);
    assert.deepEqual(q.map((r) => [r.event_id, r.group, r.kind]).sort(), [
      ['j-surrogate', 'ledger', 'invalid_event'], ['j-surrogate', 'warehouse', 'invalid_event'],
      [`credit:${a.accountId}:j-huge`, 'ledger', 'invalid_event'], [`credit:${a.accountId}:j-huge`, 'warehouse', 'invalid_event'],
    ].sort());
    const rec = await admin<{ ok: boolean; quarantined: Array<{ event_id: string }> }>(stack.url, 'GET', '/ops/v1/reconcile?timeout_ms=5000');
    assert.equal(rec.json.ok, true);
    assert.ok(rec.json.quarantined.some((r) => r.event_id === 'j-surrogate'));
  });
});

describe('tollgate reconcile (CLI)', () => {
  test('prints every quarantined event by id, group, position, kind and reason, and exits 0 when in agreement', async () => {
    // The real program, as an operator runs it.
    const { code, text } = await new Promise<{ code: number | null; text: string }>((resolve) => {
      const child = spawn(process.execPath, [join(import.meta.dirname, '../../services/tollgate/src/main.ts'), 'reconcile', '--url', stack.url, '--timeout-ms', '5000'], {
        env: childEnv({ ADMIN_TOKEN }), stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.on('data', (d: Buffer) => { text += d.toString('utf8'); });
      child.stderr.on('data', (d: Buffer) => { text += d.toString('utf8'); });
      child.on('close', (code) => resolve({ code, text }));
    });
    assert.equal(code, 0, text);
    assert.match(text, /tollgate reconcile: \d+ quarantined event\(s\), in no balance:\n/);
    assert.match(text, /\n  p-surrogate  warehouse usage\/-1@-1  invalid_event: model: must be well-formed Unicode \(it contains a lone surrogate\)\n/);
    assert.match(text, /\n  j-surrogate  warehouse usage\/-1@-1  invalid_event: model: must be well-formed Unicode/);
    assert.match(text, /tollgate reconcile: hot state and warehouse agree on the balances of (1 account|\d+ accounts) \(every account with a credit or usage\)\n/);
  });
});

describe('the edges refuse values a later stage cannot hold', () => {
  test('model with a lone surrogate, over-long, or with control characters: 400 invalid_request naming model', async () => {
    const c = await customer(stack.url, 1, 'edge-model');
    for (const [model, problem] of [
      // refused by the body parser already, as Anthropic refuses it ("no low surrogate in string")
      ['claude-haiku-4-5/\ud800', 'Request body is not valid JSON: model has a \\u escape of half a surrogate pair (U+D800–U+DFFF without its other half), which is not text'],
      ['claude-haiku-4-5' + 'x'.repeat(300), 'model: String should have at most 256 characters'],
      ['claude-haiku-4-5\n', 'model: String should not contain control characters'],
    ] as const) {
      const err = await c.client.messages.create({ model, max_tokens: 4, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
      assert.ok(err instanceof Anthropic.BadRequestError, String(err));
      assert.equal(err.status, 400);
      const body = (err.error as { error: { type: string; message: string } }).error;
      assert.equal(body.type, 'invalid_request_error');
      assert.equal(body.message, problem);
    }
    // Nothing was held or charged.
    assert.equal(await settledBalance(stack, c.accountId), 1_000_000n);
  });

  test('bad credit grants: beyond 2^53 µc, zero, negative grant kind, over-long or malformed reference, balance past the bound: 400', async () => {
    const acct = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/accounts', { name: 'edge-credits' });
    const path = `/admin/v1/accounts/${acct.json.id}/credits`;
    const cases: Array<[unknown, RegExp]> = [
      [{ credits: '99999999999999999999999', reference: 'r1' }, /^credits: must be within ±9007199254\.740991$/],
      [{ credits: 0, reference: 'r2' }, /^credits: must not be zero$/],
      [{ credits: -5, kind: 'grant', reference: 'r3' }, /^credits: a grant must be positive/],
      [{ credits: -5, kind: 'refund', reference: 'r3b' }, /^credits: a refund must be positive/],
      [{ credits: '-5', reference: 'r3c' }, /^kind: a negative amount takes credit away and needs kind "adjustment"$/],
      [{ credits: '1.1234567', reference: 'r3d' }, /^credits: "1\.1234567" has more than 6 decimal places$/],
      [{ credits: 1, reference: 'r'.repeat(201) }, /^reference: /],
      [{ credits: 1, reference: 'bad\ud800' }, /^Request body is not valid JSON: reference has a \\u escape of half a surrogate pair/],
      [{ credits: 1, reference: 'tab\there' }, /^reference: must not contain control characters/],
    ];
    for (const [body, message] of cases) {
      const r = await admin<{ error: { type: string; message: string } }>(stack.url, 'POST', path, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json.error.type, 'invalid_request_error');
      assert.match(r.json.error.message, message);
    }
    // The resulting balance is bounded too: 9_000_000_000 credits fit once, not twice.
    assert.equal((await admin(stack.url, 'POST', path, { credits: '9000000000', reference: 'big-1' })).status, 201);
    const second = await admin<{ error: { message: string } }>(stack.url, 'POST', path, { credits: '9000000000', reference: 'big-2' });
    assert.equal(second.status, 400);
    assert.equal(second.json.error.message, OUT_OF_RANGE);
    // Names are bounded and well-formed as well.
    assert.equal((await admin(stack.url, 'POST', '/admin/v1/accounts', { name: 'bad\u0000name' })).status, 400);
    assert.equal((await admin(stack.url, 'POST', `/admin/v1/accounts/${acct.json.id}/keys`, { name: 'k\ud800' })).status, 400);
    assert.equal((await admin(stack.url, 'POST', '/admin/v1/accounts', { name: 'n'.repeat(201) })).status, 400);
    await stack.tollgate.drain();
    assert.deepEqual((await stack.tollgate.warehouse.quarantined()).filter((q) => q.event_id.includes(acct.json.id)), []);
  });
});

describe('credit grant race (embedded)', () => {
  test('fifty parallel grants with one reference: one 201, forty-nine 200 duplicate, credited once; another amount is 409', async () => {
    const acct = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/accounts', { name: 'race' });
    const path = `/admin/v1/accounts/${acct.json.id}/credits`;
    const answers = await Promise.all(Array.from({ length: 50 }, () =>
      admin<{ duplicate: boolean; balance_micro_credits: string }>(stack.url, 'POST', path, { credits: '7', reference: 'race-ref' })));
    assert.deepEqual(answers.map((a) => a.status).sort(), [...Array(49).fill(200), 201]);
    assert.equal(answers.filter((a) => a.json.duplicate === true).length, 49);
    for (const a of answers) assert.equal(a.json.balance_micro_credits, '7000000');
    const other = await admin<{ error: { type: string; message: string } }>(stack.url, 'POST', path, { credits: '8', reference: 'race-ref' });
    assert.equal(other.status, 409);
    assert.equal(other.json.error.message, 'reference race-ref was already used for 7 credits (kind grant)');
    assert.equal(await settledBalance(stack, acct.json.id), 7_000_000n);
  });

  test('a credit reference reused with another kind is a conflict (409), whatever the amount: one reference names one entry, applied or only claimed', async () => {
    const acct = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/accounts', { name: 'kinds' });
    const path = `/admin/v1/accounts/${acct.json.id}/credits`;
    assert.equal((await admin(stack.url, 'POST', path, { credits: '4', reference: 'inv-9' })).status, 201);
    for (const kind of ['top_up', 'refund', 'adjustment'] as const) {
      const r = await admin<{ error: { type: string; message: string } }>(stack.url, 'POST', path, { credits: '4', kind, reference: 'inv-9' });
      assert.deepEqual([r.status, r.json.error.type, r.json.error.message], [409, 'invalid_request_error', 'reference inv-9 was already used for 4 credits (kind grant)'], kind);
    }
    const same = await admin<{ duplicate: boolean }>(stack.url, 'POST', path, { credits: '4', kind: 'grant', reference: 'inv-9' });
    assert.deepEqual([same.status, same.json.duplicate], [200, true]);
    // Racing kinds under one reference: exactly one is credited, the other is told 409.
    const race = await Promise.all((['refund', 'top_up'] as const).map((kind) => admin(stack.url, 'POST', path, { credits: '2', kind, reference: 'race-kind' })));
    assert.deepEqual(race.map((r) => r.status).sort(), [201, 409]);
    assert.equal(await settledBalance(stack, acct.json.id), 6_000_000n);
  });

  test('balance out of range under concurrent grants: applied up to ±(2^53 − 1) µc exactly, the rest 400 naming the bound', async () => {
    const acct = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/accounts', { name: 'overflow-race' });
    const path = `/admin/v1/accounts/${acct.json.id}/credits`;
    // 2^53 − 1 − 1_000_000 µc: one credit below the bound; 5 × 0.2 credit fit exactly.
    assert.equal((await admin(stack.url, 'POST', path, { credits: '9007199253.740991', reference: 'base' })).status, 201);
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      admin<{ error?: { type: string; message: string } }>(stack.url, 'POST', path, { credits: '0.2', reference: `race-${i}` })));
    assert.deepEqual(answers.map((a) => a.status).sort(), [201, 201, 201, 201, 201, 400, 400, 400, 400, 400]);
    for (const a of answers.filter((x) => x.status === 400)) assert.deepEqual([a.json.error?.type, a.json.error?.message], ['invalid_request_error', OUT_OF_RANGE]);
    assert.equal(await settledBalance(stack, acct.json.id), 9_007_199_254_740_991n);
  });
});
