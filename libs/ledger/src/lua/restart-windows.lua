-- Starts spend windows afresh: a limit newly set on a window counts from that moment (README,
-- "Spend limits"). Prepended with expire-holds.lua (now_ms) and windows-fn.lua (bounds).
-- KEYS[1]   hwin:{account}  hash holdId -> the window counter keys it is counted in ('\n'-joined)
-- KEYS[2..] sw:{account}:<window>:<owner>  window counter bases (':' .. window start appended)
-- ARGV[1]   now override in ms or '' (tests), ARGV[2..] the windows' names, as KEYS[2..]
-- The counter of each window open now is removed, and every hold counted in it (in flight, or
-- expired and still counted) stops naming it, so its settle, release or usage no longer moves
-- it: a request held before the limit was set is not counted under it. An entry left naming no
-- counter stays, as '' (the usage apply's proof that the request's hold was seen: it is then
-- not counted as a hold-less request would be). Returns how many hold entries changed.
local hwin_key = KEYS[1]
local now = now_ms(ARGV[1])
local gone = {}
for i = 2, #KEYS do
  local s = bounds(ARGV[i], now)
  local key = KEYS[i] .. ':' .. string.format('%d', s)
  redis.call('DEL', key)
  gone[key] = true
end
local changed = 0
local entries = redis.call('HGETALL', hwin_key)
for i = 1, #entries, 2 do
  local kept, dropped = {}, false
  for k in string.gmatch(entries[i + 1], '[^\n]+') do
    if gone[k] then dropped = true else kept[#kept + 1] = k end
  end
  if dropped then
    redis.call('HSET', hwin_key, entries[i], table.concat(kept, '\n'))
    changed = changed + 1
  end
end
return changed
