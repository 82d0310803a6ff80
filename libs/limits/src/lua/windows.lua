-- Every plan window of one request in one step (one round trip), with rate-limiter-flexible's
-- own counter arithmetic (its `incrTtlLuaScript`: SET 0 EX <window> NX, INCRBY, PTTL, EXPIRE if
-- the key has no TTL), so the keys, values and expiries are those RateLimiterRedis makes.
-- KEYS[i]   <prefix>:<window>:<subject>
-- ARGV[1]   'acquire' | 'adjust'
-- acquire:  ARGV[2 + 3(i-1) ..] per key: cost, window seconds, limit
--   Consumes every window; if any count then exceeds its limit, gives every window its cost
--   back (never below zero) and reports the refusal: a refused request has taken nothing.
--   Returns { refused (0|1), consumed_1, pttl_1, consumed_2, pttl_2, ... } (consumed before any give-back).
-- adjust:   ARGV[2 + 2(i-1) ..] per key: delta (integer, may be negative), window seconds
--   A positive delta is a penalty (counted whatever the limit); a negative one a give-back that
--   never leaves the counter below zero. Returns the number of keys adjusted.
-- Invariant: no counter is left below zero; every counter carries an expiry.

local function incr(key, points, sec)
  redis.call('SET', key, 0, 'EX', sec, 'NX')
  local consumed = redis.call('INCRBY', key, points)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 then
    redis.call('EXPIRE', key, sec)
    ttl = 1000 * tonumber(sec)
  end
  return consumed, ttl
end

-- Counts go to Redis as decimal strings: a Lua number would be formatted %.14g (1e+15).
local function int(n) return string.format('%d', n) end

-- rate-limiter-flexible's reward, then a penalty of the shortfall when it went negative.
local function give_back(key, points, sec)
  if points <= 0 then return end
  local v = incr(key, int(-points), sec)
  if v < 0 then incr(key, int(-v), sec) end
end

if ARGV[1] == 'acquire' then
  local out = { 0 }
  local refused = false
  for i = 1, #KEYS do
    local a = 2 + 3 * (i - 1)
    local consumed, ttl = incr(KEYS[i], ARGV[a], ARGV[a + 1])
    if consumed > tonumber(ARGV[a + 2]) then refused = true end
    out[#out + 1] = consumed
    out[#out + 1] = ttl
  end
  if refused then
    out[1] = 1
    for i = 1, #KEYS do
      local a = 2 + 3 * (i - 1)
      give_back(KEYS[i], tonumber(ARGV[a]), ARGV[a + 1])
    end
  end
  return out
end

for i = 1, #KEYS do
  local a = 2 + 2 * (i - 1)
  local delta = tonumber(ARGV[a])
  if delta > 0 then incr(KEYS[i], ARGV[a], ARGV[a + 1]) else give_back(KEYS[i], -delta, ARGV[a + 1]) end
end
return #KEYS
