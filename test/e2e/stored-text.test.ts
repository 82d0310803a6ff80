// Fix I.6: credit references (and names, one rule) refuse control characters and line/paragraph
// separators wherever they are: a leading/trailing `\n` or `\t` used to be trimmed away first and
// U+2028/U+2029 were not checked at all, so such references were granted (201).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { admin, startStack, type Stack } from '../support/tollgate.ts';

let stack: Stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack.close(); });

const CONTROL = 'must not contain control characters';
const SEPARATOR = 'must not contain line or paragraph separators (U+2028, U+2029)';

test('text that is not one line (control characters, U+2028/U+2029, leading or trailing): 400 naming the field, for references and names alike; spaces are still trimmed', async () => {
  const acct = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/accounts', { name: 'refs' });
  const path = `/admin/v1/accounts/${acct.json.id}/credits`;
  const cases: Array<[string, string]> = [
    ['ref\n', CONTROL], ['\tref', CONTROL], ['a\nb', CONTROL], ['ref\r', CONTROL], ['ref\u0085', CONTROL],
    ['ref\u2028', SEPARATOR], ['\u2029ref', SEPARATOR], ['a\u2028b', SEPARATOR],
  ];
  for (const [reference, problem] of cases) {
    const r = await admin<{ error: { type: string; message: string } }>(stack.url, 'POST', path, { credits: 1, reference });
    assert.equal(r.status, 400, JSON.stringify(reference));
    assert.deepEqual([r.json.error.type, r.json.error.message], ['invalid_request_error', `reference: ${problem}`]);
    const n = await admin<{ error: { message: string } }>(stack.url, 'POST', '/admin/v1/accounts', { name: reference });
    assert.equal(n.status, 400, JSON.stringify(reference));
    assert.equal(n.json.error.message, `name: ${problem}`);
  }
  const ok = await admin<{ reference: string }>(stack.url, 'POST', path, { credits: 1, reference: '  invoice 42  ' });
  assert.deepEqual([ok.status, ok.json.reference], [201, 'invoice 42']);
  const blank = await admin<{ error: { message: string } }>(stack.url, 'POST', path, { credits: 1, reference: '   ' });
  assert.equal(blank.status, 400);
});
