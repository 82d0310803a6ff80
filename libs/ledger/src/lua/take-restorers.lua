-- A load takes what was announced while the state was lost (epoch.lua): the flag opens the hold
-- restore window; the control processes with records to put back (`<ready>:record-restorers`)
-- become `<ready>:pending` (PX ARGV[1]): readers that find a record absent and gateways' new
-- holds wait while it exists, and each process leaves it once done (`restored`). The Cluster
-- layout's store-wide keys (one slot); load.lua does the same inline.
-- KEYS[1] `<ready>:restorers`, KEYS[2] `<ready>:record-restorers`, KEYS[3] `<ready>:pending`
-- Returns 1 when some process had announced (the load opens the hold restore window), else 0.
local announced = redis.call('DEL', KEYS[1]) == 1
if redis.call('EXISTS', KEYS[2]) == 1 then
  announced = true
  if tonumber(ARGV[1]) > 0 then
    redis.call('RENAME', KEYS[2], KEYS[3])
    redis.call('PEXPIRE', KEYS[3], ARGV[1])
  else
    redis.call('DEL', KEYS[2])
  end
end
return announced and 1 or 0
