-- The state's epoch (the ready key's value, which every load replaces), read by each process's
-- registry (gateway holds, control records) every poll; and, while the state is lost (no ready
-- key) and the caller has something to put back (ARGV[1] > 0), in the same step its
-- announcement: its id (ARGV[3]) joins the set `<ready>:restorers` (PX ARGV[1]), which the next
-- load takes (load.lua, take-restorers.lua): holds wait its restore window, and readers wait
-- until every announced process said it is done (`restored`, or the set's expiry). One step, so
-- no load can come between the read and the announcement.
-- KEYS[1] the ready key; KEYS[2] (Cluster only) the layout key, which must hold ARGV[2].
-- ARGV[4] 'lost': the caller found the state lost elsewhere (the Cluster's directory Redis
-- empty): announce whatever the ready key holds.
-- Returns the epoch, or false while the state is lost or in another layout.
local v = redis.call('GET', KEYS[1])
if v and KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[2] then v = false end
if ARGV[4] == 'lost' then v = false end
local announce = tonumber(ARGV[1]) or 0
if not v and announce > 0 then
  local restorers = KEYS[1] .. ':restorers'
  -- (a process of before 2026-12-05 announced with a plain string: a set replaces it)
  if redis.call('TYPE', restorers).ok == 'string' then redis.call('DEL', restorers) end
  redis.call('SADD', restorers, ARGV[3] ~= nil and ARGV[3] ~= '' and ARGV[3] or '?')
  redis.call('PEXPIRE', restorers, announce)
end
return v
