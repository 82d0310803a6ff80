-- Reserve credit for one request: the only place credit is reserved. Prepended with
-- expire-holds.lua.
-- KEYS[1] bal:{account}   balance, integer string (missing = 0)
-- KEYS[2] held:{account}  Σ outstanding holds, integer string (missing = 0)
-- KEYS[3] holds:{account} hash holdId -> amount
-- KEYS[4] hexp:{account}  zset holdId -> expiry, epoch ms of the server clock
-- ARGV[1] holdId, ARGV[2] amount (integer string, >= 0), ARGV[3] ttl in ms
-- Returns { ok (1|0), balance, held } as strings; the caller computes available = balance − held.
-- Invariant: after a successful hold, balance > 0 and balance − held >= 0, where held counts
-- this hold; a failed hold changes nothing but the expiry of stale holds.

-- 1. Compare two canonical signed decimal integer strings without turning them into numbers.
local function cmp(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na and -1 or 1 end
  local r
  if #a ~= #b then r = (#a < #b) and -1 or 1
  elseif a == b then return 0
  else r = (a < b) and -1 or 1 end
  -- Among negatives the longer / lexically larger string is the smaller number.
  return na and -r or r
end

local bal_key, held_key, holds_key, expiry_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hold_id, amount, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()

-- 2. Stale holds of this account stop counting before anything is decided.
expire_holds(held_key, holds_key, expiry_key, now)

-- 3. A repeated hold id replaces its earlier hold instead of leaking it: take the old amount
--    out of held first (invariant held = Σ holds stays true even on a client retry).
local previous = redis.call('HGET', holds_key, hold_id)
if previous then
  redis.call('DECRBY', held_key, previous)
  redis.call('HDEL', holds_key, hold_id)
  redis.call('ZREM', expiry_key, hold_id)
end

local balance = redis.call('GET', bal_key) or '0'
local held_before = redis.call('GET', held_key) or '0'

-- 4. No credit at all: refuse even a zero-cost hold (a request must never run on a balance
--    that is zero or in debt).
if cmp(balance, '0') <= 0 then
  tidy_held(held_key)
  return { 0, balance, held_before }
end

-- 5. Tentatively add the amount with Redis' exact 64-bit arithmetic, read the new sum back as
--    a string, and check balance >= held + amount, i.e. available >= amount.
redis.call('INCRBY', held_key, amount)
local held_after = redis.call('GET', held_key)
if cmp(balance, held_after) < 0 then
  -- 6a. Not enough: undo the tentative add; nothing is reserved.
  redis.call('DECRBY', held_key, amount)
  tidy_held(held_key)
  return { 0, balance, held_before }
end

-- 6b. Enough: record the hold and when it stops counting if no one settles it.
redis.call('HSET', holds_key, hold_id, amount)
redis.call('ZADD', expiry_key, now + ttl, hold_id)
tidy_held(held_key)
return { 1, balance, held_after }
