-- Ledger consumer: a batch of usage and ledger events of ONE log partition, in log order, in one
-- script call (one round trip instead of one per event). Prepended with position.lua,
-- usage-fn.lua and ledger-fn.lua: each event runs exactly the single-event logic, so each one's
-- effect and its position still move together ("progress stored with the effect"), and a
-- redelivered batch is a run of duplicates.
-- Two layouts (ARGV[5]):
-- - '' (standalone Redis): any accounts, one call per partition batch.
--   KEYS[1] pos, KEYS[2] accounts, KEYS[3] ledger; ARGV[1] ready key or ''.
-- - 'a' (Redis Cluster: ONE account A, so every key is in A's hash slot): the events of A in
--   a partition batch. KEYS[1] pos:{A} (A's own positions), KEYS[2] the ready marker of A's
--   slot, KEYS[3] ledger:{A}; ARGV[1] the generation the marker must hold (else not ready:
--   a rebuild ran since the caller read the partition positions). No gap check here: the
--   caller checked the partition-wide position (see account_ctx in position.lua).
-- Then per event, in order:
--   usage:  u:<event_id> (u:{A}:<event_id> on a Cluster), bal:{A}, held:{A}, holds:{A}, hexp:{A}, hwin:{A}   (6 keys)
--   ledger: bal:{A}                                                          (1 key)
-- ARGV[2] usage memory ms, ARGV[3] money bound (2^53 - 1),
-- ARGV[4] '1' to answer the balance after each applied usage debit, else ''; ARGV[5] layout;
-- then per event: kind ('u' or 'l'), event_id, amount (integer string), account id,
-- position field or '', offset or ''
-- Returns a flat array, two entries per event handled: verdict (1 applied, 0 duplicate,
-- -1 gap, -2 not ready, -3 out of range, -9 failed) and, for an applied usage, the balance it
-- left (integer string; the balance.low trigger compares it), for a failure the error text,
-- else ''. The script stops after the first event that is neither applied nor a duplicate: the
-- caller handles it (rewind, wait, quarantine) and goes on from the event after it.
-- A failure (a 64-bit overflow: poison) is caught with pcall; each event's first write is the
-- fallible arithmetic, so a failed event wrote nothing, and the events before it keep their
-- effects and positions (Redis does not roll a script back, nor should it here).
-- Within the call the ready marker, each position and the accounts set are read or written
-- once (batch_ctx in position.lua): the script is atomic, so no one sees the difference.
local pos_key, accounts_key, ledger_key = KEYS[1], KEYS[2], KEYS[3]
local ready_key, memory_ms, bound, want_balance = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local ctx
if ARGV[5] == 'a' then ctx = account_ctx(KEYS[2], ARGV[1], KEYS[1]) else ctx = batch_ctx(ready_key, pos_key, accounts_key) end
local out = {}
local k, a = 4, 6
while a <= #ARGV do
  local kind, event_id, amount, account, field, offset =
    ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local ok, verdict
  if kind == 'u' then
    ok, verdict = pcall(apply_usage, ctx, KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5],
      event_id, amount, memory_ms, account, field, offset)
    if ok and verdict == 1 then
      out[#out + 1] = 1
      out[#out + 1] = want_balance and (redis.call('GET', KEYS[k + 1]) or '0') or ''
    end
    k = k + 6
  else
    ok, verdict = pcall(apply_ledger, ctx, ledger_key, KEYS[k], event_id, amount, account, field, offset, bound)
    if ok and verdict == 1 then
      out[#out + 1] = 1
      out[#out + 1] = ''
    end
    k = k + 1
  end
  a = a + 6
  if not ok then
    out[#out + 1] = -9
    out[#out + 1] = type(verdict) == 'table' and (verdict.err or 'script error') or tostring(verdict)
    ctx.flush()
    return out
  end
  if verdict ~= 1 then
    out[#out + 1] = verdict
    out[#out + 1] = ''
    if verdict ~= 0 then
      ctx.flush()
      return out
    end
  end
end
ctx.flush()
return out
