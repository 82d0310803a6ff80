-- Shrink (or, if usage ran over, grow) a hold to the actual cost once it is known, and keep it
-- reserved a while longer: until its usage event closes it, the settled cost must not become
-- available again. Prepended with expire-holds.lua (for now_ms).
-- KEYS[1] held:{account}, KEYS[2] holds:{account}, KEYS[3] hexp:{account}, KEYS[4] hwin:{account}
-- ARGV[1] holdId, ARGV[2] actual cost (integer string), ARGV[3] ttl in ms, ARGV[4] test clock or ''
-- Returns 1 if the hold existed, 0 if it was already gone (no-op).
-- Invariant: held = Σ holds hash; each spend window still open counts the hold at its new amount.
local held_key, holds_key, expiry_key = KEYS[1], KEYS[2], KEYS[3]
local hold_id, actual, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])

-- 1. A hold that is gone (released, expired, closed by its usage event) stays gone.
local amount = redis.call('HGET', holds_key, hold_id)
if not amount then return 0 end

-- 2. held += actual − amount, done as two exact Redis operations (no Lua arithmetic).
redis.call('DECRBY', held_key, amount)
redis.call('INCRBY', held_key, actual)
redis.call('HSET', holds_key, hold_id, actual)
tidy_held(held_key)

-- 2b. The same move in every spend window the hold is counted in (a window key that expired
--     is not brought back).
for k in string.gmatch(redis.call('HGET', KEYS[4], hold_id) or '', '[^\n]+') do
  if redis.call('EXISTS', k) == 1 then
    redis.call('DECRBY', k, amount)
    redis.call('INCRBY', k, actual)
  end
end

-- 3. A new expiry from now (server clock).
redis.call('ZADD', expiry_key, string.format('%d', now_ms(ARGV[4]) + ttl), hold_id)
return 1
