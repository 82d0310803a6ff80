// The warehouse contract over a ClickHouse server (HTTP). Needs CLICKHOUSE_URL
// (CLICKHOUSE_USER / CLICKHOUSE_PASSWORD optional); each run uses its own database and drops it.

import { after, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { Warehouse, createHttpClickHouse } from '@tollgate/warehouse';
import { warehouseContract } from './warehouse.contract.ts';

const url = process.env['CLICKHOUSE_URL'];

if (url === undefined || url === '') {
  test('warehouse contract: ClickHouse server', (t) => {
    process.stderr.write(
      '\n*** SKIPPED: ClickHouse server tests need CLICKHOUSE_URL (e.g. http://localhost:8123) ***\n\n',
    );
    t.skip('SKIPPED: ClickHouse server tests need CLICKHOUSE_URL');
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
}
