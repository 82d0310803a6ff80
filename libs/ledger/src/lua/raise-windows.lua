-- Raises spend-window counters to at least the counts a rebuild read from the warehouse, never
-- lowering one (a counter also holds requests in flight, which the warehouse has no row of).
-- KEYS[i]    a window counter, sw:{account}:<window>:<owner>:<start>, all of one account (one slot)
-- ARGV[2i-1] its count, µc (a non-negative integer string)
-- ARGV[2i]   when it expires (epoch ms, as hold.lua sets it: a day after the window ends), or ''
-- Returns how many counters were raised.

-- a < b for integer strings without leading zeros (a counter may be negative: settle moves it)
local function less(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na end
  if na then a, b = b:sub(2), a:sub(2) end
  if #a ~= #b then return #a < #b end
  return a < b
end

local raised = 0
for i = 1, #KEYS do
  local want = ARGV[2 * i - 1]
  if less(redis.call('GET', KEYS[i]) or '0', want) then
    redis.call('SET', KEYS[i], want)
    if ARGV[2 * i] ~= '' then redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i]) end
    raised = raised + 1
  end
end
return raised
