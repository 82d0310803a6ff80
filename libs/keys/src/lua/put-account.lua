-- Store an account record if it is newer than the stored one (control log replays and
-- reordering are harmless: the highest version wins).
-- KEYS[1] accounts (hash id -> json)
-- ARGV[1] id, ARGV[2] version, ARGV[3] json
-- Returns 1 when stored, 0 when the stored version is the same or newer.
-- Invariant: a stored version never decreases.
local accounts_key = KEYS[1]
local id, version, json = ARGV[1], tonumber(ARGV[2]), ARGV[3]

-- 1. Compare with what is there; versions are small integers, exact as Lua numbers.
local current = redis.call('HGET', accounts_key, id)
if current and tonumber(cjson.decode(current).version) >= version then return 0 end

-- 2. Newer (or first): replace.
redis.call('HSET', accounts_key, id, json)
return 1
