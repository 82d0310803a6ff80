// The distributed transport: @clickhouse/client over HTTP to a ClickHouse server.

import { createClient } from '@clickhouse/client';
import type { ClickHouseClient } from '@clickhouse/client';

export interface HttpClickHouseOptions {
  /** e.g. `http://localhost:8123` */
  url: string;
  username?: string;
  password?: string;
  /** default database of the connection; the Warehouse always qualifies its tables anyway */
  database?: string;
}

export function createHttpClickHouse(opts: HttpClickHouseOptions): ClickHouseClient {
  return createClient({
    url: opts.url,
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: opts.password } : {}),
    ...(opts.database !== undefined ? { database: opts.database } : {}),
  });
}
