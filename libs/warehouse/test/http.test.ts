// The warehouse contract over a ClickHouse server (HTTP), plus what the Warehouse relies on from
// a server beyond the contract: rollups fed by materialized views, insert deduplication, query
// parameters, users. The server is CLICKHOUSE_URL (CLICKHOUSE_USER / CLICKHOUSE_PASSWORD
// optional), else one on 127.0.0.1:$CLICKHOUSE_PORT (default 8123) answering /ping, e.g. from
// `bash deploy/clickhouse.sh start`. Without one the suite skips loudly, and fails when services
// are required (TOLLGATE_REQUIRE_SERVICES=1 or CI=true). Each run uses its own database and
// drops it.

import { after, describe, test } from 'node:test';
import { createClient } from '@clickhouse/client';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { LedgerEvent, LedgerKind, UsageEventV1, UsageEventV2 } from '@tollgate/events';
import { bundledCatalogPath, loadCatalogFile, priceVersion } from '@tollgate/pricing';
import { ForeignAnswerError, Warehouse, WarehouseUnavailableError, closeMonth, createHttpClickHouse, invoiceLinesForMonth, isDataError, rollupsMatchRaw, usageReport } from '@tollgate/warehouse';
import { findClickHouse, requireClickHouse } from '../../../test/support/services.ts';
import { warehouseContract } from './warehouse.contract.ts';
import { q, v1, v2 } from './usage-fixtures.ts';

const url = await findClickHouse();
const version = priceVersion(loadCatalogFile(bundledCatalogPath('cny')));
const prices = { current: () => version };

if (url === undefined) {
  test('warehouse contract: ClickHouse server', async (t) => {
    await requireClickHouse(t); // skips loudly, or throws when services are required
  });
} else {
  const server = {
    url,
    ...(process.env['CLICKHOUSE_USER'] ? { username: process.env['CLICKHOUSE_USER'] } : {}),
    ...(process.env['CLICKHOUSE_PASSWORD'] ? { password: process.env['CLICKHOUSE_PASSWORD'] } : {}),
  };
  const database = `tollgate_test_${randomBytes(4).toString('hex')}`;
  after(async () => {
    const client = createHttpClickHouse(server);
    try {
      await client.command({ query: `DROP DATABASE IF EXISTS \`${database}\`` });
    } finally {
      await client.close();
    }
  });
  warehouseContract('ClickHouse server', (tablePrefix) =>
    new Warehouse({ client: createHttpClickHouse(server), database, tablePrefix }));

  describe('ClickHouse server: what the Warehouse relies on beyond the contract', () => {
    const T = (iso: string): number => Date.parse(iso);
    // cost_micros: 1,000 + 2,000 in January; 9,007,199,254,740,993 (> 2^53) in February.
    const events = (): UsageEventV2[] => [
      v2({ event_id: 's1', ts: T('2026-01-31T23:59:59.999Z'), account_id: 'acc_a', cost_micros: '1000', quantities: q({ input: 10, output: 1 }) }),
      v2({ event_id: 's2', ts: T('2026-01-31T23:59:00.000Z'), account_id: 'acc_a', key_id: 'key_2', cost_micros: '2000', quantities: q({ input: 20, output: 2 }) }),
      v2({ event_id: 's3', ts: T('2026-02-01T00:00:00.000Z'), account_id: 'acc_b', cost_micros: '9007199254740993', quantities: q({ input: 30, output: 3 }) }),
    ];

    test('a repair write whose call timed out is ended at the server (commandSettled: KILL QUERY … SYNC): it never lands afterwards, where another member may have rebuilt the same rows', async () => {
      const prefix = `k${randomBytes(3).toString('hex')}_`;
      const w = new Warehouse({ client: createHttpClickHouse({ ...server, requestTimeoutMs: 400 }), database, tablePrefix: prefix });
      const table = `\`${database}\`.\`${prefix}late\``;
      try {
        await w.command(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
        await w.command(`CREATE TABLE ${table} (x UInt8) ENGINE = MergeTree ORDER BY x`);
        // 2 s of server work, past the client's 400 ms: the call fails; the server would go on
        // and write its 2 rows after it (as plain `command` does, the control below).
        const slow = `INSERT INTO ${table} SELECT sleepEachRow(1) + 1 FROM numbers(2) SETTINGS max_block_size = 1`;
        await assert.rejects(w.commandSettled(slow), (err) => err instanceof WarehouseUnavailableError);
        await assert.rejects(w.command(slow), (err) => err instanceof WarehouseUnavailableError);
        await new Promise((r) => setTimeout(r, 3000));
        // Only the control's rows (1 and 1: sleepEachRow returns 0): the settled one was killed.
        const rows = await w.select(`SELECT count() AS n FROM ${table}`);
        assert.equal(Number(rows[0]!['n']), 2);
      } finally {
        await w.command(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
        await w.close();
      }
    });

    test('two writers store the same batch at once, then redeliver (insert_deduplication_token, non_replicated_deduplication_window): raw FINAL and every rollup materialized view count each event once', async () => {
      const prefix = `s${randomBytes(3).toString('hex')}_`;
      const w = new Warehouse({ client: createHttpClickHouse(server), database, tablePrefix: prefix });
      // a second client, as a second `warehouse` group process would have
      const other = new Warehouse({ client: createHttpClickHouse(server), database, tablePrefix: prefix });
      try {
        await w.migrate();
        const all = events();
        // Both check "already stored?" before either inserts, so both send the same block with
        // the same token: the raw table's and each rollup's dedup window keep one.
        await Promise.all([w.insertUsage(all), other.insertUsage(all)]);
        await w.insertUsage(all); // redelivered later: every row marked rollup_skip = 1
        await w.insertUsage([all[2]!, all[0]!]); // an overlapping batch
        // 1,000 + 2,000 + 9,007,199,254,740,993 = 9,007,199,254,743,993 µc
        assert.equal((await w.usageTotals({})).costMicros, 9_007_199_254_743_993n);
        for (const table of [w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) {
          const r = await w.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c FROM ${table}`);
          assert.deepEqual([r[0]!['n'], r[0]!['c']], ['3', '9007199254743993'], table);
        }
        assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
        const months = await usageReport(w, { from: T('2026-01-01T00:00:00Z'), to: T('2026-03-01T00:00:00Z'), granularity: 'month' });
        assert.equal(months.source, 'rollup_day');
        assert.deepEqual(months.series.map((p) => [new Date(p.bucket).toISOString(), p.requests, p.costMicros]), [
          ['2026-01-01T00:00:00.000Z', 2, 3000n], ['2026-02-01T00:00:00.000Z', 1, 9_007_199_254_740_993n],
        ]);
      } finally {
        await w.close();
        await other.close();
      }
    });

    test('an INSERT that a proxy answers for the server (200 with a page, no ClickHouse headers) is never counted as done: insertUsage and insertLedger reject as unavailable, and through the server afterwards every event is stored once', async () => {
      // Kind: an answer that is not the server's, on the write path. The sink took a proxy's 200
      // as a stored batch and moved on: billed usage missing from the warehouse for good.
      const { createServer, request } = await import('node:http');
      let fakeInserts = true;
      let faked = 0;
      const target = new URL(url);
      const proxy = createServer((req, res) => {
        const query = new URL(req.url ?? '/', 'http://x').searchParams.get('query') ?? '';
        if (fakeInserts && /^\s*INSERT/i.test(query)) {
          faked++;
          req.resume();
          req.on('end', () => res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>OK</body></html>'));
          return;
        }
        const up = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        up.on('error', () => res.destroy());
        req.pipe(up);
      });
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
      const { port } = proxy.address() as import('node:net').AddressInfo;
      const prefix = `f${randomBytes(3).toString('hex')}_`;
      const w = new Warehouse({ client: createHttpClickHouse({ ...server, url: `http://127.0.0.1:${port}` }), database, tablePrefix: prefix });
      try {
        await w.migrate();
        const all = events();
        const grant: LedgerEvent = { type: 'ledger', event_id: 'g1', ts: T('2026-01-02T00:00:00Z'), account_id: 'acc_a', kind: 'grant', amount_micros: '5000000', reference: 'inv-1' };
        // a foreign answer, and not a data error: the sink retries the batch, never quarantines it
        const foreign = (err: unknown) => (err instanceof ForeignAnswerError || (err instanceof WarehouseUnavailableError && err.cause instanceof ForeignAnswerError)) && !isDataError(err);
        await assert.rejects(w.insertUsage(all), foreign);
        await assert.rejects(w.insertLedger([grant]), foreign);
        assert.ok(faked >= 2, `the proxy answered ${faked} INSERTs`);
        assert.equal((await w.usageTotals({})).requests, 0, 'nothing was stored');
        fakeInserts = false;
        await w.insertUsage(all);
        await w.insertLedger([grant]);
        assert.deepEqual([(await w.usageTotals({})).requests, (await w.usageTotals({})).costMicros], [3, 9_007_199_254_743_993n]);
        assert.equal((await w.ledgerTotals('acc_a')).amountMicros, 5_000_000n);
      } finally {
        await w.close();
        await new Promise<void>((r) => proxy.close(() => r()));
      }
    });

    test('usage insert formats agree: the same events through the Native body (a server\'s default) and the JSONCompactEachRow body (chDB\'s) store the same rows, rollups and positions, byte for byte', async () => {
      // Kind: two encoders of one row. Hostile text (NUL, controls, quotes, U+2028, emoji, 300
      // UTF-8 bytes: a two-byte length), Int64 max, nulls, empty and non-empty arrays and maps,
      // both event versions, and 1,200 events over 300 accounts and 70 models: a LowCardinality
      // dictionary past 256 values (two-byte indexes) in the same block.
      const nasty = 'a\tb\nc\r\\d\\N"e\'f\u0000g\u0001\u007f\u2028é😀{}[],:';
      const long = `${'é'.repeat(140)}x${'😀'.repeat(5)}`;
      const batch: Array<UsageEventV2 | UsageEventV1> = [
        v2({
          event_id: `req_${nasty}`, ts: T('2026-03-01T00:00:00.007Z'), account_id: `acc_${nasty}`, key_id: long, model: `m_${nasty}`,
          served_model: long, quantities: q({ input: 4_294_967_295, output: 1, web_search_requests: 3 }),
          iterations: [{ type: 'message', model: `it_${nasty}`, catalog_model: null, quantities: q({ input: 5 }), cost_micros: '9223372036854775807' }],
          cost_micros: '9223372036854775807', upstream_cost_micros: '9007199254740993', upstream_currency: null, tier: long,
          unit_prices: { [`k_${nasty}`]: `v_${nasty}`, input: '0.000001', [long]: '1' }, multipliers: [`mul_${nasty}`, '', long],
          unpriced: [`un_${nasty}`, long], anomalies: [long, 'x'], upstream_id: long, attempts: 255, http_status: 65535,
          ttft_ms: null, thinking_tokens: 4_294_967_295, stop_reason: null, speed: '', stream: false, upstream_request_id: null,
        }),
        v1({ event_id: 'req_v1', ts: T('2026-03-01T00:00:01Z'), account_id: 'acc_v1', cost_micros: '12', upstream_request_id: null }),
        ...Array.from({ length: 1200 }, (_, i) => v2({
          event_id: `req_${i}`, ts: T('2026-03-01T00:00:00Z') + i * 997, account_id: `acc_${i % 300}`, key_id: `key_${i % 450}`,
          model: `model_${i % 70}`, catalog_model: `cm_${i % 3}`, served_model: i % 5 === 0 ? null : `sm_${i % 7}`,
          cost_micros: String(i * 1_000_003), quantities: q({ input: i, output: i % 17 }),
          unit_prices: i % 4 === 0 ? {} : { input: String(i % 9), output: '15' }, multipliers: i % 6 === 0 ? ['batch'] : [],
          anomalies: i % 11 === 0 ? ['usage_missing'] : [], upstream_request_id: `up_${i}`, ttft_ms: i % 8 === 0 ? null : i,
        })),
      ];
      const positions = batch.map((_, i) => (i === 1 ? undefined : { partition: i % 8, offset: BigInt(i) * 1_000_000_007n }));
      const dump = async (w: Warehouse): Promise<string[]> => {
        const out: string[] = [];
        for (const table of [w.tables.usage, w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) {
          const columns = table === w.tables.usage ? '* EXCEPT inserted_at'
            : '* EXCEPT (latency_q, ttft_q), toString(finalizeAggregation(latency_q)) AS lq, toString(finalizeAggregation(ttft_q)) AS tq';
          out.push(JSON.stringify(await w.select(`SELECT ${columns} FROM ${table} FINAL ORDER BY ALL`)));
        }
        return out;
      };
      const made: Warehouse[] = [];
      try {
        const dumps: string[][] = [];
        for (const insertFormat of ['native', 'json'] as const) {
          const w = new Warehouse({ client: createHttpClickHouse(server), database, tablePrefix: `f${insertFormat[0]}${randomBytes(3).toString('hex')}_`, insertFormat });
          made.push(w);
          await w.migrate();
          await w.insertUsage(batch, positions);
          assert.equal((await w.usageTotals({})).requests, 1202, insertFormat);
          assert.deepEqual(await w.getUsageEvent(`req_${nasty}`), batch[0], insertFormat);
          dumps.push(await dump(w));
        }
        assert.equal(dumps[0]![0]!.length > 100_000, true);
        assert.deepEqual(dumps[0], dumps[1]);
      } finally {
        for (const w of made) await w.close();
      }
    });

    test('usage insert formats: a client or profile with Native type conversion and LowCardinality in Native off still stores the Native body exactly', async () => {
      // Kind: a server setting the Native body could rely on. Five columns go as LowCardinality
      // where the table's type is plain; were that conversion subject to these settings, a
      // profile turning them off would fail every insert with TYPE_MISMATCH, a data error, and
      // storeEvents would quarantine every event. The server drops LowCardinality whatever
      // they say (26.7); this pins it.
      const prefix = `p${randomBytes(3).toString('hex')}_`;
      const client = createClient({ url: server.url, ...(server.username ? { username: server.username } : {}), ...(server.password ? { password: server.password } : {}),
        clickhouse_settings: { input_format_native_allow_types_conversion: 0, low_cardinality_allow_in_native_format: 0 } });
      const w = new Warehouse({ client, database, tablePrefix: prefix });
      try {
        await w.migrate();
        await w.insertUsage([v2({ event_id: 'n1', ts: T('2026-03-01T00:00:00Z'), account_id: 'acc_n', cost_micros: '5', unit_prices: { input: '1' } })]);
        assert.equal((await w.usageTotals({})).costMicros, 5n);
        assert.deepEqual(((await w.getUsageEvent('n1')) as UsageEventV2 | undefined)?.unit_prices, { input: '1' });
      } finally {
        await w.close();
      }
    });

    test('late facts on 2,000 accounts of 80-character ids after a month close (~170 KB of account ids, past a URL field\'s 128 KiB): the next open month carries one refund line each, exact', async () => {
      // Kind: an id list sent as a query parameter. The late-delta pass sent the accounts with
      // late facts as one `Array(String)` parameter, i.e. in the URL: past ~1,500 such accounts
      // every invoice, statement and export of the open month failed ("Field value too long").
      const prefix = `l${randomBytes(3).toString('hex')}_`;
      const w = new Warehouse({ client: createHttpClickHouse(server), database, tablePrefix: prefix });
      try {
        await w.migrate();
        const acc = (i: number) => `acc_${String(i).padStart(4, '0')}_${'a'.repeat(71)}`;
        const entry = (i: number, kind: LedgerKind, micros: string, ts: number): LedgerEvent =>
          ({ type: 'ledger', event_id: `credit:${acc(i)}:${kind}-${i}`, ts, account_id: acc(i), kind, amount_micros: micros, reference: `${kind}-${i}` });
        await w.insertEvents([entry(0, 'grant', '5000000', Date.UTC(2026, 10, 10))]);
        await closeMonth(w, '2026-11', prices, Date.UTC(2026, 11, 1, 0, 0, 1));
        // late: refunds of i + 1 µc dated 25 November, stamped after the close
        await w.insertEvents(Array.from({ length: 2000 }, (_, i) => entry(i, 'refund', String(i + 1), Date.UTC(2026, 10, 25))));
        const lines = await invoiceLinesForMonth(w, '2026-12', prices);
        assert.equal(lines.length, 2000);
        assert.deepEqual(lines.map((l) => [l.account_id, l.section, l.source_month, l.quantity, l.amount_micros]),
          Array.from({ length: 2000 }, (_, i) => [acc(i), 'refund', '2026-11', '1', `-${i + 1}`]));
        // Σ 1..2000 = 2,001,000 µc credited back
        assert.equal(lines.reduce((a, l) => a + BigInt(l.amount_micros), 0n), -2_001_000n);
      } finally {
        await w.close();
      }
    });

    test('an insert the client gave up on (a timeout) but the server finished: the retry first ends it, so every rollup counts each event once', async () => {
      // Kind: a write that outlives its client. The server goes on with an insert whose client
      // timed out; its retry restored the ids, rebuilt the rollup rows from raw, and then the
      // first insert's view blocks landed on top: those events counted twice (a tester's case).
      const prefix = `k${randomBytes(3).toString('hex')}_`;
      const w = new Warehouse({ client: createHttpClickHouse({ ...server, requestTimeoutMs: 1000 }), database, tablePrefix: prefix });
      try {
        await w.migrate();
        // A view named to run first, sleeping 2 s per new 'slow' row: the insert takes ~6 s.
        await w.command(`CREATE TABLE ${database}.\`${prefix}slow_sink\` (x UInt8) ENGINE = Null`);
        await w.command(`CREATE MATERIALIZED VIEW ${database}.\`${prefix}aaa_slow_mv\` TO ${database}.\`${prefix}slow_sink\` AS
          SELECT toUInt8(if(event_id LIKE 'slow%' AND rollup_skip = 0, sleepEachRow(2), 0)) AS x FROM ${w.tables.usage}
          SETTINGS function_sleep_max_microseconds_per_block = 0`);
        const T = Date.UTC(2026, 10, 3, 10);
        const events = ['slow_1', 'slow_2', 'slow_3', 'fast_1'].map((event_id, i) => v2({ event_id, ts: T + i, account_id: 'acc_k', cost_micros: String(10 ** i) }));
        const items = events.map((event, i) => ({ event, topic: 'usage', position: { partition: 0, offset: BigInt(i) } }));
        await assert.rejects(w.storeEvents(items, 'warehouse'), /Timeout/i);
        // The sink's retries: each first ends the insert still running (its KILL … SYNC may
        // itself outlast the 1 s timeout while the sleep finishes), then stores the batch.
        let stored = false;
        for (let attempt = 0; attempt < 30 && !stored; attempt++) {
          stored = await w.storeEvents(items, 'warehouse').then((poison) => { assert.deepEqual(poison, []); return true; }, async () => {
            await new Promise((r) => setTimeout(r, 500));
            return false;
          });
        }
        assert.ok(stored, 'the retries stored the batch');
        await new Promise((r) => setTimeout(r, 7000)); // past any insert that could still run
        // 1 + 10 + 100 + 1,000 = 1,111 µc, once in raw and in every rollup
        assert.equal((await w.usageTotals({})).costMicros, 1111n);
        for (const table of [w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) {
          const r = await w.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c FROM ${table}`);
          assert.deepEqual([r[0]!['n'], r[0]!['c']], ['4', '1111'], table);
        }
        assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
      } finally {
        await w.close();
      }
    });

    test('balances as of log positions hold when a profile sets apply_prewhere_after_final = 1 (the bound before FINAL is pinned where the server has the setting)', async () => {
      // Kind: a server setting that moves the position bound after FINAL again. Here the client
      // sends it with every query, as a user profile would apply it. acc_s: usage X 100 µc at
      // p0:5 and Y 7 µc at p0:6, X's copy at p0:14; as of p0:6 the balance is -107 µc.
      const { createClient } = await import('@clickhouse/client');
      const known = await createHttpClickHouse(server).query({ query: "SELECT count() AS n FROM system.settings WHERE name = 'apply_prewhere_after_final'", format: 'JSONEachRow' });
      const has = Number(((await known.json()) as Array<{ n: string | number }>)[0]!.n) > 0;
      const w = new Warehouse({ client: createClient({ ...server, ...(has ? { clickhouse_settings: { apply_prewhere_after_final: 1 } as never } : {}) }), database, tablePrefix: 'prewhere_' });
      try {
        await w.migrate();
        const x = v2({ event_id: 'x', ts: T('2026-01-05T00:00:00.000Z'), account_id: 'acc_s', cost_micros: '100' });
        const y = v2({ event_id: 'y', account_id: 'acc_s', cost_micros: '7', ts: x.ts + 1 });
        await w.insertUsage([x, y], [{ partition: 0, offset: 5n }, { partition: 0, offset: 6n }]);
        await w.insertUsage([x], [{ partition: 0, offset: 14n }]);
        const at = { usage: new Map([[0, 6n]]), ledger: new Map<number, bigint>() };
        assert.equal((await w.balancesAt(at)).get('acc_s'), -107n);
        if (has) {
          // What the setting does to an unpinned read: the copy past the bound hides the event.
          const raw = await w.select(`SELECT toString(sum(cost_micros)) AS c FROM ${w.tables.usage} FINAL PREWHERE log_offset <= 6`);
          assert.equal(raw[0]!['c'], '7');
        }
      } finally {
        await w.close();
      }
    });

    test('query parameters are sent as param_ and typed by the server; a missing one is UNKNOWN_QUERY_PARAMETER (456)', async () => {
      const client = createHttpClickHouse(server);
      try {
        const rs = await client.query({
          query: 'SELECT {n:Int64} + 1 AS n, {s:String} AS s',
          query_params: { n: '9007199254740992', s: "it's" },
          format: 'JSONEachRow',
          clickhouse_settings: { output_format_json_quote_64bit_integers: 1 },
        });
        assert.deepEqual(await rs.json(), [{ n: '9007199254740993', s: "it's" }]);
        await assert.rejects(client.query({ query: 'SELECT {missing:String}', format: 'JSONEachRow' }),
          (err: Error & { code?: string; type?: string }) => err.code === '456' && err.type === 'UNKNOWN_QUERY_PARAMETER');
      } finally {
        await client.close();
      }
    });

    test('users: an unknown user is refused with AUTHENTICATION_FAILED (516) before any query runs', async () => {
      const client = createHttpClickHouse({ url, username: 'tollgate_no_such_user', password: 'x' });
      try {
        await assert.rejects(client.query({ query: 'SELECT 1', format: 'JSONEachRow' }),
          (err: Error & { code?: string; type?: string }) => err.code === '516' && err.type === 'AUTHENTICATION_FAILED');
      } finally {
        await client.close();
      }
    });
  });
}
