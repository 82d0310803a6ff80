-- Spend windows, shared by hold.lua and the usage apply (usage-fn.lua). Prepended after
-- expire-holds.lua (not registered on its own). A window counter is
-- `<sw base>:<window>:<owner>:<start>`: sw base `P sw:{A}`, owner `k:<key id>` for the key
-- windows and `a` for the account's, start the window's first ms (0 for key_total); it expires
-- a day after the window ends (key_total never). The store's #windowBase builds the same names.

-- Days since 1970-01-01 -> year, month (H. Hinnant's civil_from_days), and back.
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return y, m
end
local function days_from_civil(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5)
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Start and end (ms) of the UTC window containing `now`; end nil for key_total.
local function bounds(name, now)
  if name == 'key_hourly' then local s = now - now % 3600000; return s, s + 3600000 end
  if name == 'key_daily' or name == 'account_daily' then local s = now - now % 86400000; return s, s + 86400000 end
  if name == 'account_monthly' then
    local y, m = civil(math.floor(now / 86400000))
    local ny, nm = y, m + 1
    if nm == 13 then ny, nm = y + 1, 1 end
    return days_from_civil(y, m) * 86400000, days_from_civil(ny, nm) * 86400000
  end
  return 0, nil
end

-- Counts `cost` (µc, integer string > 0) in every spend window of a request made at `ts` (ms)
-- by key `key_id` that is still open at `now` (ms): the key's hourly, daily and total windows
-- and the account's daily and monthly ones, with hold.lua's expiry. For usage whose hold this
-- state never saw (usage-fn.lua, step 6): it counts the event exactly as a rebuild counts it
-- from the warehouse (by the event's ts, every window, limit or not); restore-holds.lua counts
-- a restored hold so. Returns the counter keys it counted in.
local WINDOW_NAMES = { 'key_hourly', 'key_daily', 'key_total', 'account_daily', 'account_monthly' }
local function count_windows(sw_base, key_id, ts, cost, now)
  local counted = {}
  for _, name in ipairs(WINDOW_NAMES) do
    local s, e = bounds(name, ts)
    if not e or e > now then
      local owner = name:sub(1, 4) == 'key_' and ('k:' .. key_id) or 'a'
      local key = sw_base .. ':' .. name .. ':' .. owner .. ':' .. string.format('%d', s)
      redis.call('INCRBY', key, cost)
      if e then redis.call('PEXPIREAT', key, string.format('%d', e + 86400000)) end
      counted[#counted + 1] = key
    end
  end
  return counted
end
