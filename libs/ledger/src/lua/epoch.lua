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
return v
