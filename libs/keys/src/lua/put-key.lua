-- Store a key record if it is newer than the stored one, and keep its indexes in step.
-- KEYS[1] keys (hash id -> json), KEYS[2] keyhash (hash secret hash -> id),
-- KEYS[3] keysof:<account id of the new record> (set of key ids)
-- ARGV[1] id, ARGV[2] version, ARGV[3] hash, ARGV[4] json
-- Returns 1 when stored, 0 when the stored version is the same or newer.
-- Invariants: a stored version never decreases; keyhash[record.hash] = record.id and
-- record.id ∈ keysof[record.account_id] for every stored record. (A key that moved to
-- another account would leave a stale id in the old index; readers filter by account_id,
-- so every key touched stays declared in KEYS.)
local keys_key, hash_key, keysof_key = KEYS[1], KEYS[2], KEYS[3]
local id, version, hash, json = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]

-- 1. Only a newer version wins; versions are small integers, exact as Lua numbers.
local current = redis.call('HGET', keys_key, id)
if current then
  local old = cjson.decode(current)
  if tonumber(old.version) >= version then return 0 end
  -- 2. A record that moved off its old hash must not stay findable by it (only if that hash
  --    still points at this key).
  if type(old.hash) == 'string' and old.hash ~= hash and redis.call('HGET', hash_key, old.hash) == id then
    redis.call('HDEL', hash_key, old.hash)
  end
end

-- 3. Store the record and point its hash and its account's index at it.
redis.call('HSET', keys_key, id, json)
redis.call('HSET', hash_key, hash, id)
redis.call('SADD', keysof_key, id)
return 1
