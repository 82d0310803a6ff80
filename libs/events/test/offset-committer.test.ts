// Kind: an offset commit that fails (the coordinator moving, a rebalance, the broker away) for a
// partition that then stays idle. Before, the committer dropped it ("the next handled batch
// commits again"), but an idle partition has no next batch: the group's committed offset stayed
// behind what was handled, so tollgate_consumer_lag read > 0 for good and a restart read it all
// again. Now what failed is sent again, unless it went stale meanwhile (handled further, rewound,
// or the member joined its group again: then nothing of its earlier membership is ever sent, a
// breaker's finding: a member that stalled past its session re-sent its old commit after it
// rejoined, over the newer one of the member that owned the partition meanwhile). The commit function is the only thing given here: the
// committer's own bookkeeping is what is under test, with no broker fault to stage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OffsetCommitter, type CommitOffsets } from '../src/offset-committer.ts';

const quiet = { warn: () => {}, error: () => {} };

type Sent = Array<Record<string, string>>;

/**
 * A commit function whose calls are recorded as `topic|partition` → offset, answered by
 * `outcome(n)` for the n-th call (0-based): 'ok', 'fail', or a promise to wait on, then fail.
 */
function recorder(outcome: (n: number) => 'ok' | 'fail' | Promise<void>): { commit: CommitOffsets; sent: Sent } {
  const sent: Sent = [];
  const commit: CommitOffsets = async (offsets) => {
    const n = sent.length;
    sent.push(Object.fromEntries((offsets?.topics ?? []).flatMap((t) => t.partitions.map((p) => [`${t.topic}|${p.partition}`, p.offset]))));
    const o = outcome(n);
    if (o === 'ok') return;
    if (o !== 'fail') await o;
    throw new Error(`commit ${n} refused (NOT_COORDINATOR)`);
  };
  return { commit, sent };
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (const end = Date.now() + 5_000; !check();) {
    if (Date.now() > end) throw new Error(`${what} never happened`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('failed commit of an idle partition: sent again at the next turn, then no more', async () => {
  const c = new OffsetCommitter(20, quiet, 'ledger');
  c.joined();
  const { commit, sent } = recorder((n) => (n === 0 ? 'fail' : 'ok'));
  await c.handled('usage', 0, '5', commit);
  await c.handled('usage', 1, '9', commit);
  await until('the second commit', () => sent.length === 2);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(sent, [{ 'usage|0': '5', 'usage|1': '9' }, { 'usage|0': '5', 'usage|1': '9' }]);
});

test('failed commit of an idle partition: what was handled meanwhile is sent, not the failed older offset', async () => {
  const c = new OffsetCommitter(20, quiet, 'ledger');
  let refuse!: () => void;
  const first = new Promise<void>((r) => { refuse = r; });
  const { commit, sent } = recorder((n) => (n === 0 ? first : 'ok'));
  await c.handled('usage', 0, '5', commit);
  await until('the first commit in flight', () => sent.length === 1);
  await c.handled('usage', 0, '7', commit);
  refuse();
  await until('the second commit', () => sent.length === 2);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(sent, [{ 'usage|0': '5' }, { 'usage|0': '7' }]);
});

test('failed commit of a partition rewound while it was in flight: not sent again for it', async () => {
  const c = new OffsetCommitter(20, quiet, 'ledger');
  c.joined();
  let refuse!: () => void;
  const first = new Promise<void>((r) => { refuse = r; });
  const { commit, sent } = recorder((n) => (n === 0 ? first : 'ok'));
  await c.handled('usage', 0, '5', commit);
  await c.handled('usage', 1, '6', commit);
  await until('the first commit in flight', () => sent.length === 1);
  c.drop('usage', 0); // rewound to an earlier position: 5 would run ahead of the effects
  refuse();
  await until('the second commit', () => sent.length === 2);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(sent, [{ 'usage|0': '5', 'usage|1': '6' }, { 'usage|1': '6' }]);
});

test('failed commit, then the member joins its group again (it stalled past its session; another member may have committed further): nothing of the earlier membership is sent, failed or pending, nor what a batch of then handles after the join', async () => {
  const c = new OffsetCommitter(20, quiet, 'ledger');
  c.joined();
  let refuse!: () => void;
  const first = new Promise<void>((r) => { refuse = r; });
  const { commit, sent } = recorder((n) => (n === 0 ? first : 'ok'));
  const batchOfThen = c.joins;
  await c.handled('usage', 0, '10', commit);
  await until('the first commit in flight', () => sent.length === 1);
  await c.handled('usage', 1, '4', commit); // pending behind it
  c.joined(); // the rejoin (kafkajs GROUP_JOIN), with the same partitions back
  refuse(); // UNKNOWN_MEMBER_ID, as the broker answers a member it dropped
  await c.handled('usage', 2, '9', commit, batchOfThen); // a batch of the old membership ends now
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(sent, [{ 'usage|0': '10' }], 'the old 10 was not re-sent over the newer owner\'s commit, nor 4 or 9');
  await c.handled('usage', 0, '25', commit); // handled in the new membership: committed
  await until('the new membership\'s commit', () => sent.length === 2);
  assert.deepEqual(sent[1], { 'usage|0': '25' });
});

test('failed commit at stop: flush tries once more and returns (the broker away does not hold the stop)', async () => {
  const c = new OffsetCommitter(3_600_000, quiet, 'ledger');
  const { commit, sent } = recorder(() => 'fail');
  await c.handled('usage', 0, '5', commit);
  await c.flush();
  assert.deepEqual(sent, [{ 'usage|0': '5' }, { 'usage|0': '5' }]);
  await c.flush();
  assert.equal(sent.length, 2, 'given up: nothing left to send');
});
