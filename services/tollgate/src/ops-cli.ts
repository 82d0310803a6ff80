import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const OPS_HELP = `Usage: tollgate rebuild|reconcile [--url URL] [--timeout-ms N]

  rebuild     rebuild hot state (balances, ledger entries, keys) from the warehouse as of
              its log positions; consumers then replay the log after those positions
  reconcile   prove hot state and the warehouse agree; prints every difference and every
              quarantined (poison) event by id

Both are carried out by the process that owns the warehouse (an aggregator running the
warehouse group, or the embedded all-in-one process).

Options:
  --url URL        that process's HTTP address (default http://127.0.0.1:$PORT, PORT=8080)
  --timeout-ms N   reconcile: how long to wait for the warehouse to catch up (default 30000)
  -h, --help       show this help

The admin token comes from ADMIN_TOKEN, else DATA_DIR/admin-token.
Exit codes: 0 done / in agreement, 1 differences or failure, 2 bad usage.`;

function option(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i >= 0) return argv[i + 1];
  const eq = argv.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}

/** Runs `rebuild` or `reconcile` against a running process; returns the exit code. */
export async function runOps(command: 'rebuild' | 'reconcile', argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${OPS_HELP}\n`);
    return 0;
  }
  const url = (option(argv, '--url') ?? `http://127.0.0.1:${env.PORT ?? 8080}`).replace(/\/+$/, '');
  const timeout = option(argv, '--timeout-ms') ?? '30000';
  if (!/^\d+$/.test(timeout)) {
    process.stderr.write(`tollgate ${command}: --timeout-ms must be a whole number\n`);
    return 2;
  }
  let token = env.ADMIN_TOKEN;
  if (!token) {
    try {
      token = readFileSync(join(env.DATA_DIR ?? './data', 'admin-token'), 'utf8').trim();
    } catch {
      process.stderr.write(`tollgate ${command}: set ADMIN_TOKEN (no ${join(env.DATA_DIR ?? './data', 'admin-token')} either)\n`);
      return 2;
    }
  }
  process.stderr.write(`tollgate ${command}: asking ${url} …\n`);
  const res = await fetch(command === 'rebuild' ? `${url}/ops/v1/rebuild` : `${url}/ops/v1/reconcile?timeout_ms=${timeout}`, {
    method: command === 'rebuild' ? 'POST' : 'GET',
    headers: { authorization: `Bearer ${token}` },
  }).catch((err: unknown) => {
    process.stderr.write(`tollgate ${command}: cannot reach ${url}: ${err instanceof Error ? err.message : String(err)}\n`);
    return undefined;
  });
  if (!res) return 1;
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  if (command === 'reconcile') {
    const diffs = Array.isArray(body.differences) ? body.differences.length : 0;
    const quarantined = Array.isArray(body.quarantined) ? body.quarantined as Array<Record<string, unknown>> : [];
    if (quarantined.length > 0) {
      // Poison events are in neither side's balances: named here so they can be explained.
      process.stderr.write(`tollgate reconcile: ${quarantined.length} quarantined event(s), in no balance:\n`);
      for (const q of quarantined) {
        process.stderr.write(`  ${String(q.event_id)}  ${String(q.group)} ${String(q.topic)}/${String(q.partition)}@${String(q.offset)}  ${String(q.kind)}: ${String(q.reason)}\n`);
      }
    }
    process.stderr.write(body.ok === true
      ? `tollgate reconcile: hot state and warehouse agree on ${String(body.accounts)} accounts\n`
      : `tollgate reconcile: ${diffs} difference(s)${body.problem ? `: ${String(body.problem)}` : ''}\n`);
    return body.ok === true ? 0 : 1;
  }
  if (!res.ok) {
    process.stderr.write(`tollgate rebuild: failed (${res.status})\n`);
    return 1;
  }
  process.stderr.write(`tollgate rebuild: ${String(body.balances)} balances, ${String(body.keys)} keys restored in ${String(body.ms)} ms\n`);
  return 0;
}
