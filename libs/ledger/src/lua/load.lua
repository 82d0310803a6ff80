-- Rebuild: replace every balance, ledger entry and position in ONE atomic step, then mark the
-- state ready. An apply script runs entirely before or after it, never in between: after it,
-- a consumer past the loaded positions sees a gap and rewinds, so every event after the
-- snapshot is applied exactly once. Holds are left alone (they expire by themselves).
-- KEYS[1] accounts (set), KEYS[2] ledger (hash), KEYS[3] pos (hash), KEYS[4] ready,
-- KEYS[5] rejected (hash event id -> reason)
-- ARGV[1] balance key prefix ("<P>bal:"), ARGV[2] n balances, then n × (account, balance),
-- then m, m × (ledger event id, entry '<amount> <kind>'), then k, k × (position field, offset),
-- then r, r × (refused event id, reason), r = -1 leaving the refusals as they are, then the new
-- epoch (random, from the caller; the usage ids of the snapshot were written holding it): it
-- goes into the pos hash (see EPOCH_FIELD in position.lua), so every usage id marker written
-- before this step stops counting in the same atomic step as the effects it vouched for go;
-- then the restore window in ms and the longest wait for announced restorers in ms (step 3),
-- then the ids of control processes seen holding unacknowledged records before the loss.
-- KEYS[6]: the mark of the rebuild under way (RedisBalanceStore.markRebuild), or '' for none:
-- gone, Redis lost its data while the rebuild ran (the accounts, keys and pools it put back
-- before this step with it), and nothing is written: returns -1 (a later rebuild decides).
-- Balance keys are named from ARGV (single Redis or one hash slot; not Redis Cluster).
local accounts_key, ledger_key, pos_key, ready_key, rejected_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if KEYS[6] ~= '' and redis.call('EXISTS', KEYS[6]) == 0 then return -1 end
local bal_prefix = ARGV[1]

-- 1. Forget the old state entirely.
for _, account in ipairs(redis.call('SMEMBERS', accounts_key)) do
  redis.call('DEL', bal_prefix .. '{' .. account .. '}')
end
redis.call('DEL', accounts_key, ledger_key, pos_key)

-- 2. Write the snapshot.
local i = 2
local n = tonumber(ARGV[i])
for j = 1, n do
  local account, balance = ARGV[i + 2 * j - 1], ARGV[i + 2 * j]
  redis.call('SET', bal_prefix .. '{' .. account .. '}', balance)
  redis.call('SADD', accounts_key, account)
end
i = i + 2 * n + 1
local m = tonumber(ARGV[i])
for j = 1, m do redis.call('HSET', ledger_key, ARGV[i + 2 * j - 1], ARGV[i + 2 * j]) end
i = i + 2 * m + 1
local k = tonumber(ARGV[i])
for j = 1, k do redis.call('HSET', pos_key, ARGV[i + 2 * j - 1], ARGV[i + 2 * j]) end
i = i + 2 * k + 1
local r = tonumber(ARGV[i])
if r >= 0 then
  redis.call('DEL', rejected_key)
  for j = 1, r do redis.call('HSET', rejected_key, ARGV[i + 2 * j - 1], ARGV[i + 2 * j]) end
else
  r = 0
end
redis.call('HSET', pos_key, '#epoch', ARGV[i + 2 * r + 1])

-- 3. Hot state is complete again. The ready key holds the epoch, which gateways watch (a new
--    one: re-reserve their requests in flight, restore-holds.lua). When a gateway announced
--    requests to restore while the state was lost (`<ready>:restorers`), no hold is made for
--    the restore window after this (ARGV after the epoch, ms; 0 for none), while they do.
--    The control processes that announced records to put back become `<ready>:pending` (PX
--    the ARGV after the window): readers that find a record absent, and gateways' new holds,
--    wait until each has put its records back (take-restorers.lua, prepended; the Cluster's
--    load calls the same).
local epoch, window = ARGV[i + 2 * r + 1], tonumber(ARGV[i + 2 * r + 2] or '0')
local wait = tonumber(ARGV[i + 2 * r + 3] or '0')
local holders = {}
for x = i + 2 * r + 4, #ARGV do holders[#holders + 1] = ARGV[x] end
redis.call('SET', ready_key, epoch)
local announced = take_restorers(ready_key .. ':restorers', ready_key .. ':record-restorers', ready_key .. ':pending', wait, holders)
if announced and window > 0 then
  redis.call('SET', ready_key .. ':restoring', '1', 'PX', window)
end
return n
