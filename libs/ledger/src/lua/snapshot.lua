-- Reconcile: every balance and every position in one atomic step, so the two agree.
-- KEYS[1] accounts (set), KEYS[2] pos (hash), KEYS[3] ready; ARGV[1] balance key prefix.
-- Returns { ready (0|1), n, n × (account, balance), k, k × (field, offset) }.
local out = { redis.call('EXISTS', KEYS[3]) }
local accounts = redis.call('SMEMBERS', KEYS[1])
out[#out + 1] = #accounts
for _, account in ipairs(accounts) do
  out[#out + 1] = account
  out[#out + 1] = redis.call('GET', ARGV[1] .. '{' .. account .. '}') or '0'
end
local pos = redis.call('HGETALL', KEYS[2])
out[#out + 1] = #pos / 2
for _, v in ipairs(pos) do out[#out + 1] = v end
return out
