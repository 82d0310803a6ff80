-- Redis Cluster, the account's part of a quarantine (see quarantine.lua): remember why the
-- ledger refused this event id, in the account's slot, unless the id was applied (a
-- redelivered copy that went bad keeps its applied outcome). Idempotent.
-- KEYS[1] ledger:{A} (hash of applied ledger event ids), KEYS[2] rejected:{A}
-- ARGV[1] event id, ARGV[2] reason. Returns 1 recorded, 0 the id was applied.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
