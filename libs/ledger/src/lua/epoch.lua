-- The state's epoch (the ready key's value, which every load replaces), read by each process's
-- registry (gateway holds, control records) every poll; and, while the state is lost (no ready
-- key) and the caller has something to put back (ARGV[1] > 0), in the same step its
-- announcement (PX ARGV[1]): `<ready>:restorers`, a flag every version sets, which makes the
-- next load hold new admissions back for its restore window; and, from a control process with
-- records to put back (ARGV[3], its id), its id in the set `<ready>:record-restorers`, which the
-- next load turns into `<ready>:pending` (load.lua, take-restorers.lua): readers that find a
-- record absent, and gateways' new holds, wait until each of them said it is done (`restored`),
-- at most the load's wait. One step, so no load can come between the read and the announcement.
-- KEYS[1] the ready key; KEYS[2] (Cluster only) the layout key, which must hold ARGV[2].
-- ARGV[4] 'lost': the caller found the state lost elsewhere (the Cluster's directory Redis
-- empty): announce whatever the ready key holds.
-- ARGV[5] (a control process, ARGV[3] its id), while the state is NOT lost: ms > 0, it holds
-- records the log has not acknowledged: its id goes into the sorted set `<ready>:record-holders`
-- (score: the Redis clock + ms); '-1', it holds none any more: its id leaves the set. The
-- warehouse owner's watch remembers the set's members (holders.lua), so a load after a loss
-- waits for them even when they never announced (stalled from before the loss to after the
-- load). Expired members are dropped at each write; the set lapses with its last writer's ms.
-- Returns the epoch, or false while the state is lost or in another layout.
local v = redis.call('GET', KEYS[1])
if v and KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[2] then v = false end
if ARGV[4] == 'lost' then v = false end
local announce = tonumber(ARGV[1]) or 0
if not v and announce > 0 then
  redis.call('SET', KEYS[1] .. ':restorers', '1', 'PX', announce)
  if ARGV[3] ~= nil and ARGV[3] ~= '' then
    local ids = KEYS[1] .. ':record-restorers'
    redis.call('SADD', ids, ARGV[3])
    redis.call('PEXPIRE', ids, announce)
  end
end
local hold = tonumber(ARGV[5] or '') or 0
if v and hold ~= 0 and ARGV[3] ~= nil and ARGV[3] ~= '' then
  local holders = KEYS[1] .. ':record-holders'
  if hold > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
    redis.call('ZADD', holders, now + hold, ARGV[3])
    if redis.call('PTTL', holders) < hold then redis.call('PEXPIRE', holders, hold) end
  else
    redis.call('ZREM', holders, ARGV[3])
  end
end
return v
