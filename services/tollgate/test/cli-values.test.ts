// Typed option values of every operator command are checked before any request, with the parsers
// the API itself uses (parseCredits, parseTime, normaliseCidr): a malformed one exits 2 naming the
// option, and the server (here a recorder that would answer 200 to anything) sees nothing.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runTollgate } from '../../../test/support/cli.ts';

let server: Server;
let url: string;
const seen: Array<{ method: string; path: string; body: string }> = [];

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', path: req.url ?? '', body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

const tg = (...args: string[]) => runTollgate(args, { ADMIN_TOKEN: 'admin-token-for-cli-values-test', TOLLGATE_URL: url });

const TIME_FORMS = 'expected an RFC 3339 timestamp such as 2026-11-30T12:00:00Z, a date such as 2026-11-30 (00:00 UTC), or epoch milliseconds';

test('malformed typed values (credits, times, CIDRs, page sizes, choices, usage filters) exit 2 naming the option, before any request', async () => {
  const cases: Array<[string[], string]> = [
    [['accounts', 'update', 'acct_1', '--daily-credits', 'abc'], '--daily-credits: "abc" is not a decimal number (expected e.g. "12.5" or "3")'],
    [['accounts', 'update', 'acct_1', '--low-balance-credits', '1e3'], '--low-balance-credits: "1e3" is not a decimal number (expected e.g. "12.5" or "3")'],
    [['accounts', 'update', 'acct_1', '--low-balance-credits', '0.0000001'], '--low-balance-credits: "0.0000001" has more than 6 decimal places'],
    [['accounts', 'update', 'acct_1', '--overdraft-credits=-5'], '--overdraft-credits: must not be negative (--overdraft-credits none removes it)'],
    [['credits', 'grant', 'acct_1', 'abc', '--reference', 'r'], 'CREDITS: "abc" is not a decimal number (expected e.g. "12.5" or "3")'],
    [['credits', 'grant', 'acct_1', '1.1234567', '--reference', 'r'], 'CREDITS: "1.1234567" has more than 6 decimal places'],
    [['credits', 'grant', 'acct_1', '0', '--reference', 'r'], 'CREDITS: must not be zero'],
    [['credits', 'grant', 'acct_1', '--reference', 'r', '--', '-5'], 'CREDITS: a negative amount takes credit away and needs --kind adjustment'],
    [['keys', 'update', 'key_1', '--hourly-credits', 'xyz'], '--hourly-credits: "xyz" is not a decimal number (expected e.g. "12.5" or "3")'],
    [['keys', 'update', 'key_1', '--total-credits', '1e3'], '--total-credits: "1e3" is not a decimal number (expected e.g. "12.5" or "3")'],
    [['keys', 'update', 'key_1', '--ip-allowlist', '10.0.0.0/8,999.1.1.1'], '--ip-allowlist: "999.1.1.1" is not an IPv4 or IPv6 CIDR (e.g. 203.0.113.0/24, 2001:db8::/32)'],
    [['keys', 'update', 'key_1', '--expires-at', 'tomorrow'], `--expires-at: "tomorrow" is not a time; ${TIME_FORMS}`],
    [['credits', 'history', 'acct_1', '--from', 'yesterday'], `--from: "yesterday" is not a time; ${TIME_FORMS}`],
    [['credits', 'history', 'acct_1', '--limit', '0'], '--limit must be a whole number from 1 to 1000, not "0"'],
    [['usage', '--to', 'soon'], `--to: "soon" is not a time; ${TIME_FORMS}`],
    [['usage', '--limit', '5000'], '--limit must be a whole number from 1 to 1000, not "5000"'],
    [['usage', '--granularity', 'week'], '--granularity must be one of minute, hour, day, month (not "week")'],
    [['usage', '--group-by', 'plan'], '--group-by must be one of account, key, model, status, upstream (not "plan")'],
    [['usage', '--status', 'weird'], '--status must be one of ok, upstream_error, client_disconnect, stream_error, usage_anomaly, unmetered (not "weird")'],
    // the usage filters: filterValue's rule, which every usage route applies (1-256 characters, no controls)
    [['usage', '--upstream', 'a\x01b'], '--upstream: contains a control character; ids and model names have none'],
    [['usage', '--account', 'acct_\n1'], '--account: contains a control character; ids and model names have none'],
    [['usage', '--key', 'key_\x7f'], '--key: contains a control character; ids and model names have none'],
    [['usage', '--model', 'claude\u0085'], '--model: contains a control character; ids and model names have none'],
    [['usage', '--upstream', 'u'.repeat(257)], '--upstream: is 257 characters long; at most 256'],
    // the range: --to before --from, in any of the forms (the API refuses it with a 400)
    [['usage', '--from', '2026-11-02', '--to', '2026-11-01'], '--to: 2026-11-01T00:00:00.000Z is before --from (2026-11-02T00:00:00.000Z)'],
    [['usage', '--from', '2026-11-01T00:00:00.001Z', '--to', '1793491200000'], '--to: 2026-11-01T00:00:00.000Z is before --from (2026-11-01T00:00:00.001Z)'],
    [['credits', 'history', 'acct_1', '--from', '2026-11-01T08:00:00+08:00', '--to', '2026-10-31T23:59:59Z'], '--to: 2026-10-31T23:59:59.000Z is before --from (2026-11-01T00:00:00.000Z)'],
  ];
  for (const [args, message] of cases) {
    const name = `tollgate ${args[0]}${args[0] === 'usage' ? '' : ` ${args[1]}`}`;
    const r = await tg(...args);
    assert.deepEqual(r, { code: 2, stdout: '', stderr: `${name}: ${message}\n(see ${name} --help)\n` }, args.join(' '));
  }
  assert.deepEqual(seen, []);
});

test('well-formed typed values are sent: "none" as null, a date for --expires-at as its RFC 3339 instant, a negative adjustment, times as typed', async () => {
  seen.length = 0;
  assert.equal((await tg('keys', 'update', 'key_1', '--expires-at', '2027-01-31', '--hourly-credits', 'none', '--ip-allowlist', '10.0.0.0/8')).code, 0);
  assert.equal((await tg('credits', 'grant', 'acct_1', '--kind', 'adjustment', '--reference', 'fix-1', '--', '-2.5')).code, 0);
  // an empty range (--to equal to --from, in another form) is the API's to judge, as typed
  assert.equal((await tg('usage', '--format', 'json', '--from', '2026-11-01', '--to', '1793491200000')).code, 0);
  // a filter of exactly 256 characters, and any text without controls, is sent as typed
  assert.equal((await tg('usage', '--format', 'json', '--upstream', 'u'.repeat(256), '--model', 'claude é')).code, 0);
  assert.deepEqual(seen.map((s) => [s.method, s.path, s.body === '' ? '' : JSON.parse(s.body)]), [
    ['PATCH', '/admin/v1/keys/key_1', { hourly_credits: null, ip_allowlist: ['10.0.0.0/8'], expires_at: '2027-01-31T00:00:00.000Z' }],
    ['POST', '/admin/v1/accounts/acct_1/credits', { credits: '-2.5', reference: 'fix-1', kind: 'adjustment' }],
    ['GET', '/admin/v1/usage?from=2026-11-01&to=1793491200000', ''],
    ['GET', `/admin/v1/usage?model=claude+%C3%A9&upstream_id=${'u'.repeat(256)}`, ''],
  ]);
});
