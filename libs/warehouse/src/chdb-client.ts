// The embedded transport: @clickhouse/client over chDB, the ClickHouse engine inside this
// process. The SQL the Warehouse sends is exactly what a ClickHouse server would get.
//
// chDB binds one data directory per process: a second client on the SAME path can be open at
// the same time, a client on a DIFFERENT path is refused until every client on the first path
// has been closed. Isolate tests by `tablePrefix` (or `database`) on one shared path.

import { createClient } from '@clickhouse/client';
import type { ClickHouseClient, ClickHouseClientConfigOptions } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';

export interface ChdbClickHouseOptions {
  /** directory holding the databases; created if missing, kept after close */
  path: string;
}

export function createChdbClickHouse(opts: ChdbClickHouseOptions): ClickHouseClient {
  if (opts.path === '' || opts.path === ':memory:') {
    // ':memory:' is a temp dir shared by the whole process and deleted with its last client,
    // which is never what a billing store wants.
    throw new TypeError('createChdbClickHouse needs a directory path for persistent data');
  }
  // chdb 3.4.0 types its connection against the standalone @clickhouse/client-common 1.23.0,
  // while @clickhouse/client 1.23.1 inlines its own copy of those types; the shapes agree at
  // run time but TypeScript sees two nominally different ClickHouseSettings, hence the cast.
  const connection = createChdbConnection({ path: opts.path }) as unknown as NonNullable<
    ClickHouseClientConfigOptions['connection']
  >;
  return createClient({ connection });
}
