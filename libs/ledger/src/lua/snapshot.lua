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
local n_at = #out + 1
out[n_at] = 0
for j = 1, #pos, 2 do
  if pos[j] ~= '#epoch' then -- the usage id epoch (position.lua), not a position
    out[#out + 1] = pos[j]
    out[#out + 1] = pos[j + 1]
    out[n_at] = out[n_at] + 1
  end
end
return out
