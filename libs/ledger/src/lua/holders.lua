-- The warehouse owner's check of the state (RedisBalanceStore.ready): whether the ready key
-- exists, and the control processes that hold records the log has not acknowledged (epoch.lua,
-- `<ready>:record-holders`, members whose time has not passed on the Redis clock).
-- KEYS[1] the ready key. Returns { 1 or 0, id, id, ... }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = { redis.call('EXISTS', KEYS[1]) }
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1] .. ':record-holders', '(' .. now, '+inf')) do out[#out + 1] = id end
return out
