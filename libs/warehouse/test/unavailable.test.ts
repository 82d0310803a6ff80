// Which read failures are "the warehouse is unavailable" (a 503 for the report routes) and which
// are the server's own answer (a SQL or data error, thrown as it came): the transport's codes,
// @clickhouse/client's timeout, and an answer that is not ClickHouse's (a proxy's error page).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClickHouseError, parseError } from '@clickhouse/client';
import { isForeignAnswer, unavailableError, WarehouseUnavailableError } from '@tollgate/warehouse';

test('transport failures are WarehouseUnavailableError naming the failure; the server\'s answers are not', () => {
  for (const code of ['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE']) {
    const err = unavailableError(Object.assign(new Error(`connect ${code} 10.0.0.1:8123`), { code }));
    assert.ok(err instanceof WarehouseUnavailableError, code);
    assert.equal(err.message, `The usage warehouse is temporarily unavailable (${code}); retry shortly`);
    assert.equal(err.gatewayCode, 'warehouse_unavailable');
    assert.equal(err.retryAfterS, 5);
  }
  assert.equal(unavailableError(new Error('Timeout error.'))?.message, 'The usage warehouse is temporarily unavailable (no answer within the request timeout); retry shortly');
  // an AggregateError of several addresses carries the code too (Node's happy eyeballs)
  assert.ok(unavailableError(Object.assign(new AggregateError([], ''), { code: 'ECONNREFUSED' })) instanceof WarehouseUnavailableError);
  // the server answered: a ClickHouse error (as the client parses the server's body), one with a
  // code (numeric text), our own bug (a TypeError), anything else
  const memory = parseError('Code: 241. DB::Exception: Memory limit (total) exceeded: would use 9.31 GiB. (MEMORY_LIMIT_EXCEEDED) (version 26.9.1.1)');
  assert.ok(memory instanceof ClickHouseError);
  for (const err of [memory, Object.assign(new Error('Syntax error'), { code: '62' }), new TypeError('x is not a function'), { code: 'ERR_SOMETHING' }, null, undefined, 'ECONNREFUSED']) {
    assert.equal(unavailableError(err), undefined, String((err as { message?: string } | null)?.message ?? err));
  }
  // something else answered for the server: the client's plain Error of a body that is not a
  // ClickHouse exception (a proxy's 502 page), a body that does not parse
  for (const err of [parseError('<html><head><title>502 Bad Gateway</title></head></html>'), new SyntaxError('Unexpected token < in JSON at position 0')]) {
    assert.ok(isForeignAnswer(err), err.message);
    assert.equal(unavailableError(err)?.message, 'The usage warehouse is temporarily unavailable (its address answered, but not as ClickHouse); retry shortly');
    assert.equal(unavailableError(err)?.cause, err, 'the foreign body stays in the cause, for the log');
  }
  assert.equal(isForeignAnswer(new Error('Timeout error.')), false, 'the client\'s timeout is no answer, not a foreign one');
  const once = new WarehouseUnavailableError('x');
  assert.equal(unavailableError(once), once, 'not wrapped twice');
});

test('every way the Warehouse reaches the server (reads, statements, row inserts) reports a refused connection as WarehouseUnavailableError', async () => {
  const { createServer } = await import('node:net');
  const { createHttpClickHouse, Warehouse } = await import('@tollgate/warehouse');
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as import('node:net').AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  const w = new Warehouse({ client: createHttpClickHouse({ url: `http://127.0.0.1:${port}`, logger: { warn: () => {} } }), database: 'tollgate' });
  try {
    for (const [what, call] of [
      ['select', () => w.select('SELECT 1')],
      ['command', () => w.command('SELECT 1')],
      ['insertRows', () => w.insertRows(w.tables.ledger, [{ event_id: 'x' }])],
    ] as const) {
      await assert.rejects(call(), (err: unknown) => err instanceof WarehouseUnavailableError && /\(ECONNREFUSED\)/.test(err.message), what);
    }
  } finally {
    await w.close();
  }
});
