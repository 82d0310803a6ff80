-- Shared prelude, prepended to hold.lua and get.lua (not registered on its own).
--
-- Money never passes through a Lua number: Lua numbers are doubles and lose integers above
-- 2^53. Amounts stay the decimal strings Redis stores, and all arithmetic on them is done by
-- Redis itself (INCRBY/DECRBY/HINCRBY: signed 64-bit, exact). Only times are Lua numbers.

-- The server's clock in epoch milliseconds, so that gateway clocks never matter. `override`
-- (a decimal ms string, '' or nil for none) is a test clock, set only by RedisBalanceStore's
-- `now` option.
local function now_ms(override)
  if override and override ~= '' then return tonumber(override) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Drops the held counter when it returns to zero so idle accounts leave no litter.
-- Invariant kept: a missing held key means 0.
local function tidy_held(held_key)
  if redis.call('GET', held_key) == '0' then redis.call('DEL', held_key) end
end

-- Releases every hold of one account whose expiry is at or before `now`: its gateway died
-- or forgot it, so it must stop reserving credit.
-- Invariant: held = Σ amounts in the holds hash, before and after.
local function expire_holds(held_key, holds_key, expiry_key, now)
  local ids = redis.call('ZRANGEBYSCORE', expiry_key, '-inf', string.format('%d', now))
  for _, id in ipairs(ids) do
    local amount = redis.call('HGET', holds_key, id)
    -- The hash entry may already be gone (settled by usage, released): then nothing is held.
    if amount then
      redis.call('DECRBY', held_key, amount)
      redis.call('HDEL', holds_key, id)
    end
  end
  if #ids > 0 then
    redis.call('ZREMRANGEBYSCORE', expiry_key, '-inf', string.format('%d', now))
    tidy_held(held_key)
  end
end
