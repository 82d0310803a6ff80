-- Drop a hold with nothing to charge.
-- KEYS[1] held:{account}, KEYS[2] holds:{account}, KEYS[3] hexp:{account}, KEYS[4] hwin:{account}
-- ARGV[1] holdId
-- Returns 1 if a hold was dropped, 0 if it was already gone.
-- Invariant: held = Σ holds hash.
local held_key, holds_key, expiry_key = KEYS[1], KEYS[2], KEYS[3]
local hold_id = ARGV[1]

-- 1. Forget the expiry either way; it is meaningless without the hold.
redis.call('ZREM', expiry_key, hold_id)

-- 2. Give the reserved amount back to available.
local amount = redis.call('HGET', holds_key, hold_id)
if not amount then return 0 end
redis.call('DECRBY', held_key, amount)
redis.call('HDEL', holds_key, hold_id)

-- 3. Nothing was spent: every spend window still open gives the amount back too.
for k in string.gmatch(redis.call('HGET', KEYS[4], hold_id) or '', '[^\n]+') do
  if redis.call('EXISTS', k) == 1 then redis.call('DECRBY', k, amount) end
end
redis.call('HDEL', KEYS[4], hold_id)
if redis.call('GET', held_key) == '0' then redis.call('DEL', held_key) end
return 1
