-- A load takes the restorers announced while the state was lost (epoch.lua): the set becomes
-- `<ready>:pending` (PX ARGV[1]), the processes still to put back what only they hold; readers
-- wait while it exists (stateLost), and each process leaves it once done (`restored`). The
-- Cluster layout's store-wide keys (one slot); load.lua does the same inline.
-- KEYS[1] `<ready>:restorers`, KEYS[2] `<ready>:pending`
-- Returns 1 when some process had announced (the load opens the hold restore window), else 0.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('TYPE', KEYS[1]).ok == 'set' then
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
else
  redis.call('DEL', KEYS[1]) -- announced by a process of before 2026-12-05: a window, no wait
end
return 1
