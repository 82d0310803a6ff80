// The embedded transport: @clickhouse/client over chDB, the ClickHouse engine inside this
// process. The SQL the Warehouse sends is exactly what a ClickHouse server would get.
//
// chDB binds one data directory per process: a second client on the SAME path can be open at
// the same time, a client on a DIFFERENT path is refused until every client on the first path
// has been closed. Isolate tests by `tablePrefix` (or `database`) on one shared path.

import { createRequire } from 'node:module';
import { arch, platform } from 'node:process';
import { createClient } from '@clickhouse/client';
import type { ClickHouseClient, ClickHouseClientConfigOptions } from '@clickhouse/client';

type ChdbConnectionModule = typeof import('chdb/connection');
let chdbModule: ChdbConnectionModule | undefined;

/**
 * chDB is loaded on first use, never at import: its native library exists for linux/x64 (and
 * macOS) only, and a distributed gateway, control or ClickHouse-backed aggregator never needs
 * it, so those roles must start where it cannot be loaded (linux/arm64 images).
 * Throws an Error naming the platform and the ways out when the binding cannot be loaded.
 */
function loadChdb(): ChdbConnectionModule {
  if (chdbModule) return chdbModule;
  try {
    chdbModule = createRequire(import.meta.url)('chdb/connection') as ChdbConnectionModule;
    return chdbModule;
  } catch (err) {
    throw new Error(
      `the embedded warehouse (chDB) cannot be loaded on ${platform}/${arch}: ${(err as Error).message.split('\n')[0]}. `
      + 'Set CLICKHOUSE_URL to use a ClickHouse server, or run this container as linux/amd64 (README.md, "Deploy", Platforms)',
      { cause: err },
    );
  }
}

/** Clients made by `createChdbClickHouse`: their connection turns an insert's body into text. */
const textOnlyClients = new WeakSet<ClickHouseClient>();

/**
 * True for a client of `createChdbClickHouse`: chDB's connection appends an insert's body to the
 * query as a UTF-8 string, so only text formats pass (a Native body would be mangled). The
 * Warehouse sends such a client its usage inserts as JSONCompactEachRow.
 */
export function isTextOnlyClient(client: ClickHouseClient): boolean {
  return textOnlyClients.has(client);
}

export interface ChdbClickHouseOptions {
  /** directory holding the databases; created if missing, kept after close */
  path: string;
}

/**
 * A ClickHouse client over chDB with its data in `opts.path`. Throws TypeError for an empty or
 * ':memory:' path, and Error when chDB cannot be loaded on this platform (see loadChdb).
 */
export function createChdbClickHouse(opts: ChdbClickHouseOptions): ClickHouseClient {
  if (opts.path === '' || opts.path === ':memory:') {
    // ':memory:' is a temp dir shared by the whole process and deleted with its last client,
    // which is never what a billing store wants.
    throw new TypeError('createChdbClickHouse needs a directory path for persistent data');
  }
  // chdb 3.4.0 types its connection against the standalone @clickhouse/client-common 1.23.0,
  // while @clickhouse/client 1.23.1 inlines its own copy of those types; the shapes agree at
  // run time but TypeScript sees two nominally different ClickHouseSettings, hence the cast.
  const connection = loadChdb().createChdbConnection({ path: opts.path }) as unknown as NonNullable<
    ClickHouseClientConfigOptions['connection']
  >;
  const client = createClient({ connection });
  textOnlyClients.add(client);
  return client;
}
