-- Shrink (or, if usage ran over, grow) a hold to the actual cost once it is known.
-- KEYS[1] held:{account}, KEYS[2] holds:{account}
-- ARGV[1] holdId, ARGV[2] actual cost (integer string)
-- Returns 1 if the hold existed, 0 if it was already gone (no-op).
-- Invariant: held = Σ holds hash; the hold keeps its expiry.
local held_key, holds_key = KEYS[1], KEYS[2]
local hold_id, actual = ARGV[1], ARGV[2]

-- 1. A hold that is gone (released, expired, closed by its usage event) stays gone.
local amount = redis.call('HGET', holds_key, hold_id)
if not amount then return 0 end

-- 2. held += actual − amount, done as two exact Redis operations (no Lua arithmetic).
redis.call('DECRBY', held_key, amount)
redis.call('INCRBY', held_key, actual)
redis.call('HSET', holds_key, hold_id, actual)
if redis.call('GET', held_key) == '0' then redis.call('DEL', held_key) end
return 1
