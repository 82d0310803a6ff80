// Which read failures are "the warehouse is unavailable" (a 503 for the report routes) and which
// are the server's own answer (a SQL or data error, thrown as it came): the transport's codes,
// @clickhouse/client's timeout, and an answer that is not ClickHouse's (a proxy's error page).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClickHouseError, parseError } from '@clickhouse/client';
import { ForeignAnswerError, isForeignAnswer, unavailableError, WarehouseUnavailableError } from '@tollgate/warehouse';

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
  // something else answered for the server: what the HTTP client makes of it (ForeignAnswerError)
  const foreign = new ForeignAnswerError('"<html><head><title>502 Bad Gateway</title></head></html>"', { cause: parseError('<html><head><title>502 Bad Gateway</title></head></html>') });
  assert.ok(isForeignAnswer(foreign));
  assert.equal(unavailableError(foreign)?.message, 'The usage warehouse is temporarily unavailable (its address answered, but not as ClickHouse); retry shortly');
  assert.equal(unavailableError(foreign)?.cause, foreign, 'what came stays in the cause, for the log');
  // an Error of our own, or the client's plain Error seen outside the HTTP client, is not one
  assert.equal(isForeignAnswer(new Error('backfillRollups: the 3 rollup views must exist first (migrate)')), false);
  assert.equal(isForeignAnswer(parseError('<html>502</html>')), false);
  assert.equal(isForeignAnswer(new Error('Timeout error.')), false, 'the client\'s timeout is no answer, not a foreign one');
  const once = new WarehouseUnavailableError('x');
  assert.equal(unavailableError(once), once, 'not wrapped twice');
});

/** The Warehouse's three ways to the server, each a call to try: a read, a statement, a row insert. */
function everyWay(w: import('@tollgate/warehouse').Warehouse): Array<readonly [string, () => Promise<unknown>]> {
  return [
    ['select', () => w.select('SELECT 1 AS ok')],
    ['command', () => w.command('SELECT 1')],
    ['insertRows', () => w.insertRows(w.tables.ledger, [{ event_id: 'x' }])],
  ];
}

test('every way the Warehouse reaches the server (reads, statements, row inserts) reports a refused connection as WarehouseUnavailableError', async () => {
  const { createServer } = await import('node:net');
  const { createHttpClickHouse, Warehouse } = await import('@tollgate/warehouse');
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as import('node:net').AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  const w = new Warehouse({ client: createHttpClickHouse({ url: `http://127.0.0.1:${port}`, logger: { warn: () => {} } }), database: 'tollgate' });
  try {
    for (const [what, call] of everyWay(w)) {
      await assert.rejects(call(), (err: unknown) => err instanceof WarehouseUnavailableError && /\(ECONNREFUSED\)/.test(err.message), what);
    }
  } finally {
    await w.close();
  }
});

test('an answer at the server\'s address that is not ClickHouse\'s (a proxy\'s page with any status, a 200 without ClickHouse\'s headers: an HTML page without a final newline, an empty body) is WarehouseUnavailableError on every way the Warehouse reaches the server, never rows, an empty result or a write done', async () => {
  // Kind: an answer that is not the server's. A proxy answering 200 with a page made the
  // JSONEachRow read return no rows (the sink's "already stored?" check said no) and an INSERT
  // count as done: billed usage silently missing from the warehouse; reports showed zeros.
  const { createServer } = await import('node:http');
  const { createHttpClickHouse, Warehouse } = await import('@tollgate/warehouse');
  for (const [status, body] of [[200, '<html><body>It works!</body></html>'], [200, ''], [200, 'ok\n'], [502, '<html>502 Bad Gateway</html>'], [401, 'Unauthorized']] as const) {
    const proxy = createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(status, { 'content-type': 'text/html' }).end(body)); });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const { port } = proxy.address() as import('node:net').AddressInfo;
    const w = new Warehouse({ client: createHttpClickHouse({ url: `http://127.0.0.1:${port}`, logger: { warn: () => {} } }), database: 'tollgate' });
    try {
      for (const [what, call] of everyWay(w)) {
        await assert.rejects(call(), (err: unknown) => err instanceof WarehouseUnavailableError
          && err.message === 'The usage warehouse is temporarily unavailable (its address answered, but not as ClickHouse); retry shortly'
          && err.cause instanceof ForeignAnswerError, `${status} ${JSON.stringify(body)}: ${what}`);
      }
    } finally {
      await w.close();
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  }
});
