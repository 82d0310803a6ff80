// Plan records in the warehouse (migration 6): stored per version, read back latest-first so a
// lost Redis is rebuilt with the operator's plans (tombstones included, so a deleted seed stays
// deleted).

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PlanRecord } from '@tollgate/events';
import { Warehouse, createChdbClickHouse } from '@tollgate/warehouse';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-warehouse-plans-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const T = Date.UTC(2026, 10, 30, 12, 0, 0, 123);
const plan = (p: Partial<PlanRecord> & Pick<PlanRecord, 'id' | 'version'>): PlanRecord => ({
  name: p.id, requests_per_minute: null, requests_per_5h: null, requests_per_week: null,
  tokens_per_minute: null, concurrent_requests: null, created_at: T, ...p,
});
const event = (p: PlanRecord) => ({ type: 'plan' as const, event_id: `plan:${p.id}:${p.version}`, ts: T + p.version, plan: p });

test('plan versions: the newest of each is loaded, limits null or whole, a tombstone stays one', async () => {
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: `pl${randomBytes(3).toString('hex')}_` });
  try {
    await w.migrate();
    const team1 = plan({ id: 'plan_team', name: 'Team', requests_per_minute: 30, version: 1 });
    const team2 = plan({ id: 'plan_team', name: 'Team', requests_per_minute: 30, requests_per_5h: 1_000_000_000, tokens_per_minute: 0, version: 2 });
    const freeGone = plan({ id: 'free', name: 'Free', requests_per_minute: 10, requests_per_5h: 40, requests_per_week: 200, deleted: true, version: 7 });
    // out of order on purpose: the version decides, not the order of arrival
    await w.insertControl([event(team2), event(freeGone)]);
    await w.insertControl([event(team1)]);
    assert.deepEqual(await w.loadPlans(), [freeGone, team2]);
  } finally {
    await w.close();
  }
});
