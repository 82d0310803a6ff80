-- A load takes what was announced while the state was lost (epoch.lua), in the load's own
-- atomic step: the flag `restorers` opens the hold restore window; the control processes with
-- records to put back (`ids`, `<ready>:record-restorers`) become `pending` (`<ready>:pending`,
-- PX `wait` ms, or dropped when `wait` is 0): readers that find a record absent and gateways'
-- new holds wait while it exists, and each process leaves it once done (`restored`).
-- Prepended to load.lua (standalone) and to take-restorers-call.lua (the Cluster's store-wide
-- keys, one slot). `holders`: ids of control processes the loading process saw holding records
-- the log had not acknowledged before the loss (holders.lua): they are waited for as if they
-- had announced (one stalled since before the loss could not). Returns true when some process
-- had announced, or was seen holding.
local function take_restorers(restorers, ids, pending, wait, holders)
  for _, id in ipairs(holders) do redis.call('SADD', ids, id) end
  local announced = redis.call('DEL', restorers) == 1
  if redis.call('EXISTS', ids) == 1 then
    announced = true
    if wait > 0 then
      -- Added to a `pending` a load just before this one left (two warehouse owners both
      -- loading): its restorers stay waited for (a RENAME dropped them: a breaker's MEDIUM),
      -- for `wait` from this load on (not shorter: a restorer this load found gets its wait).
      redis.call('SUNIONSTORE', pending, pending, ids)
      redis.call('DEL', ids)
      redis.call('PEXPIRE', pending, wait)
    else
      redis.call('DEL', ids)
    end
  end
  return announced
end
