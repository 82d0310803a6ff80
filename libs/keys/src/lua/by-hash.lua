-- The gateway's lookup: secret hash -> key -> account, in one round trip.
-- KEYS[1] keyhash (hash -> id), KEYS[2] keys (id -> json), KEYS[3] accounts (id -> json)
-- ARGV[1] secret hash
-- Returns { key json, account json }, or nil when the hash, the key or its account is unknown.
-- Read-only.
local hash_key, keys_key, accounts_key = KEYS[1], KEYS[2], KEYS[3]

-- 1. Which key has this hash.
local id = redis.call('HGET', hash_key, ARGV[1])
if not id then return nil end

-- 2. The key record itself (revoked keys stay here, with status 'revoked').
local key_json = redis.call('HGET', keys_key, id)
if not key_json then return nil end

-- 3. Its account, which the gateway needs for status and balance.
local account_json = redis.call('HGET', accounts_key, cjson.decode(key_json).account_id)
if not account_json then return nil end
return { key_json, account_json }
