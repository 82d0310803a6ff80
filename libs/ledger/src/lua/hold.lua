-- Reserve credit for one request: the only place credit is reserved. Prepended with
-- expire-holds.lua.
-- KEYS[1] bal:{account}   balance, integer string (missing = 0)
-- KEYS[2] held:{account}  Σ outstanding holds, integer string (missing = 0)
-- KEYS[3] holds:{account} hash holdId -> amount
-- KEYS[4] hexp:{account}  zset holdId -> expiry, epoch ms of the server clock
-- ARGV[1] holdId, ARGV[2] amount (integer string, >= 0), ARGV[3] ttl in ms,
-- ARGV[4] ready key or '' (when set and missing, hot state was lost: refuse with -2)
-- Returns { ok (1|0), balance, held } as strings; the caller computes available = balance − held.
-- Invariant: after a successful hold, balance > 0 and balance − held >= 0, where held counts
-- this hold; a failed hold changes nothing but the expiry of stale holds. held = Σ holds hash.

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

-- 0. Lost state (Redis restarted empty, not rebuilt yet): a missing balance would read as 0
--    and refuse as "no credit"; say "not ready" instead, so the gateway answers 503.
if ARGV[4] ~= '' and redis.call('EXISTS', ARGV[4]) == 0 then return { -2, '0', '0' } end
local now = now_ms()

-- 2. Stale holds of this account stop counting before anything is decided.
expire_holds(held_key, holds_key, expiry_key, now)

-- 3. A repeated hold id (a client retry of the same request) replaces its earlier hold
--    rather than adding to it, so held = Σ holds stays true.
local previous = redis.call('HGET', holds_key, hold_id) or '0'

local balance = redis.call('GET', bal_key) or '0'
local held_before = redis.call('GET', held_key) or '0'

-- 4. No credit at all: refuse even a zero-cost hold (a request must never run on a balance
--    that is zero or in debt).
if cmp(balance, '0') <= 0 then
  return { 0, balance, held_before }
end

-- 5. Tentatively swap the previous amount for the new one with Redis' exact 64-bit
--    arithmetic, read the sum back as a string, and check balance >= held, i.e. the
--    available credit before this hold was >= amount.
redis.call('INCRBY', held_key, amount)
redis.call('DECRBY', held_key, previous)
local held_after = redis.call('GET', held_key)
if cmp(balance, held_after) < 0 then
  -- 6a. Not enough: undo the tentative change; nothing is reserved and an earlier hold of
  --     the same id is left exactly as it was.
  redis.call('INCRBY', held_key, previous)
  redis.call('DECRBY', held_key, amount)
  tidy_held(held_key)
  return { 0, balance, held_before }
end

-- 6b. Enough: record the hold (overwriting a previous one) and when it stops counting if no
--     one settles it.
redis.call('HSET', holds_key, hold_id, amount)
redis.call('ZADD', expiry_key, string.format('%d', now + ttl), hold_id)
tidy_held(held_key)
return { 1, balance, held_after }
