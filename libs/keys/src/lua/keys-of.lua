-- An account's keys in one round trip, through the keysof index rather than the whole hash.
-- KEYS[1] keysof:<account> (set of key ids), KEYS[2] keys (id -> json)
-- Returns the key records' json; the caller drops any whose account_id is not this account
-- (a key that moved accounts). Read-only.
local out = {}
-- One HGET per id rather than HMGET with unpack(), which has a stack limit of a few
-- thousand arguments.
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local json = redis.call('HGET', KEYS[2], id)
  if json then out[#out + 1] = json end
end
return out
