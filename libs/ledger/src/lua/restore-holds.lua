-- Re-reserve the holds of requests a gateway still has in flight, after hot state was lost and
-- rebuilt (a rebuild cannot know them: a hold lives only in Redis and in its gateway's memory).
-- Without this, new requests were admitted past them until their usage landed (docs/decisions.md,
-- "In-flight holds are restored after a rebuild"). Not an admission: nothing is checked against
-- the balance or the spend limits, the requests are already running and spending upstream.
-- Prepended with expire-holds.lua and windows-fn.lua. One account's holds per call.
-- KEYS[1] held:{A}, KEYS[2] holds:{A}, KEYS[3] hexp:{A}, KEYS[4] hwin:{A}
-- ARGV[1] ready key or '' (as hold.lua's ARGV[4]: missing, or 'L…' while a Cluster rebuild is
--   loading, is not ready), ARGV[2] A's spend window base (P sw:{A}), ARGV[3] now override in
--   ms or '' (tests), then 6 values per hold: hold id, amount (µc, integer string >= 0), ttl ms
--   (> 0), ts (the request's start, epoch ms), key id, the id's usage marker key (u:…, A's slot).
-- Returns the number of holds restored, or -2 when the state is not ready.
-- A hold is restored only when nothing of it is here: no hold of its id (never lost, or restored
-- already), no hwin entry (its windows count it already, an expired hold included), and no usage
-- marker of its id in any epoch (applied in this one: its hold is closed; in an earlier one that
-- a rebuild kept the windows of: they counted it). A restored hold counts its amount in every
-- spend window of its key and account open at its ts, as the rebuild and a hold-less usage
-- count (count_windows), and names them in hwin, so its usage or release moves them exactly
-- as for a hold made here.
if ARGV[1] ~= '' then
  local ready = redis.call('GET', ARGV[1])
  if not ready or ready:sub(1, 1) == 'L' then return -2 end
end
local held_key, holds_key, expiry_key, hwin_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sw_base = ARGV[2]
local now = now_ms(ARGV[3])
expire_holds(held_key, holds_key, expiry_key, now)
local restored = 0
for i = 4, #ARGV, 6 do
  local id, amount, ttl, ts, key_id, usage_key = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), ARGV[i + 4], ARGV[i + 5]
  if redis.call('HEXISTS', holds_key, id) == 0 and redis.call('HEXISTS', hwin_key, id) == 0
      and redis.call('EXISTS', usage_key) == 0 then
    redis.call('INCRBY', held_key, amount)
    redis.call('HSET', holds_key, id, amount)
    redis.call('ZADD', expiry_key, string.format('%d', now + ttl), id)
    if amount ~= '0' then
      local names = count_windows(sw_base, key_id, ts, amount, now)
      if #names > 0 then
        redis.call('HSET', hwin_key, id, table.concat(names, '\n'))
        redis.call('PEXPIRE', hwin_key, 8 * 86400000)
      end
    end
    restored = restored + 1
  end
end
tidy_held(held_key)
return restored
