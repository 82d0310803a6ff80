-- Reserve credit for one request: the only place credit is reserved. Prepended with
-- expire-holds.lua and windows-fn.lua.
-- Checks the balance, the spend windows and the admission policy and reserves, in one step.
-- KEYS[1] bal:{account}   balance, integer string (missing = 0)
-- KEYS[2] held:{account}  Σ outstanding holds, integer string (missing = 0)
-- KEYS[3] holds:{account} hash holdId -> amount
-- KEYS[4] hexp:{account}  zset holdId -> expiry, epoch ms of the server clock
-- KEYS[5] tmp:{account}   scratch for exact arithmetic (deleted before returning)
-- KEYS[6] hwin:{account}  hash holdId -> the window counter keys it is counted in ('\n'-joined),
--                         for a hold counted in any, until its usage or release
-- KEYS[7..] sw:{account}:<window>:<owner>  window counter bases (':' .. window start appended)
-- ARGV[1] holdId, ARGV[2] amount (integer string, >= 0), ARGV[3] ttl in ms,
-- ARGV[4] ready key or '' (when set and missing, or 'L…' (a Cluster rebuild loading), hot
--         state was lost: refuse with -2)
-- ARGV[5] overdraft (integer string >= 0), ARGV[6] policy '' | 'strict' | 'clamp',
-- ARGV[7] base (µc: the hold with no output), ARGV[8] the output's segments, in order,
--         ' '-joined 'per:tokens' (µc per output token; tokens, or '' for all that are left):
--         the hold of t tokens is base + the t tokens laid over the segments (past the last,
--         free), ARGV[9] max tokens, ARGV[10] floor tokens,
-- ARGV[11] floor amount (the hold at the floor), ARGV[12] now override in ms or '' (tests),
-- ARGV[13], ARGV[14], ... per window: name, limit (integer string)
-- Returns { 1, amount, tokens or '-1', balance, held } on success;
--         { 0, kind ('credit' | window name), balance, held, required, used, reset ms or '' };
--         { -2 } when not ready.
-- Invariants: after a successful hold, balance + overdraft > 0, balance − held + overdraft >= 0
-- (held counting this hold) and every window's counter <= its limit; a refused hold changes
-- nothing but the expiry of stale holds. held = Σ holds hash. Amounts are Lua numbers only in
-- the clamp step, where every value is below the full amount, which the caller keeps < 2^53.

-- 1. Compare two canonical signed decimal integer strings without turning them into numbers.
local function cmp(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na and -1 or 1 end
  local r
  if #a ~= #b then r = (#a < #b) and -1 or 1
  elseif a == b then return 0
  else r = (a < b) and -1 or 1 end
  -- Among negatives the longer / lexically larger string is the smaller number.
  return na and -r or r
end


local bal_key, held_key, holds_key, expiry_key, tmp_key, hwin_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local hold_id, amount, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local overdraft, policy = ARGV[5], ARGV[6]

-- Exact a + Σ plus − Σ minus on canonical integer strings. When every operand is at most 15
-- characters (|x| < 10^15) and there are at most 8 of them, every partial sum stays below
-- 8 × 10^15 < 2^53, so Lua's doubles add them exactly and '%d' prints the integer (this skips
-- ~10 Redis commands per hold); otherwise, or for anything not a plain integer string (which
-- INCRBY refuses as it always did), Redis adds them on the scratch key (signed 64-bit, exact).
local function small(v)
  return #v <= 15 and v:match('^%-?%d+$') ~= nil
end
local function exact(a, plus, minus)
  local fits = #plus + #minus <= 7 and small(a)
  for _, v in ipairs(plus) do fits = fits and small(v) end
  for _, v in ipairs(minus) do fits = fits and small(v) end
  if fits then
    local r = tonumber(a)
    for _, v in ipairs(plus) do r = r + tonumber(v) end
    for _, v in ipairs(minus) do r = r - tonumber(v) end
    return string.format('%d', r)
  end
  redis.call('SET', tmp_key, a)
  for _, v in ipairs(plus) do redis.call('INCRBY', tmp_key, v) end
  for _, v in ipairs(minus) do redis.call('DECRBY', tmp_key, v) end
  local r = redis.call('GET', tmp_key)
  redis.call('DEL', tmp_key)
  return r
end

-- 0. Lost state (Redis restarted empty, not rebuilt yet): a missing balance would read as 0
--    and refuse as "no credit"; say "not ready" instead, so the gateway answers 503.
--    On a Cluster the marker is the slot's, and 'L…' while a rebuild is loading it.
--    For a short while after a rebuild (the restore window, `<ready key>:restoring`, set by the
--    rebuild with a TTL) no hold is made either: gateways first re-reserve their requests still
--    in flight, whose holds the loss took (restore-holds.lua).
if ARGV[4] ~= '' then
  local ready = redis.call('GET', ARGV[4])
  if not ready or ready:sub(1, 1) == 'L' then return { -2 } end
  if redis.call('EXISTS', ARGV[4] .. ':restoring') == 1 then return { -2 } end
end
local now = now_ms(ARGV[12])

-- 1. Stale holds of this account stop counting before anything is decided (they stay counted
--    in their spend windows: an unsettled request errs toward the limit, never past it).
expire_holds(held_key, holds_key, expiry_key, now)

-- 2. A repeated hold id (a client retry of the same request) replaces its earlier hold rather
--    than adding to it: its amount is left out of every sum below.
local previous = redis.call('HGET', holds_key, hold_id)
local prev_windows = {}
if previous then
  for k in string.gmatch(redis.call('HGET', hwin_key, hold_id) or '', '[^\n]+') do prev_windows[k] = true end
end
local prev = previous or '0'

local balance = redis.call('GET', bal_key) or '0'
local held_before = redis.call('GET', held_key) or '0'

-- 3. No credit at all (balance + overdraft <= 0): refuse even a zero-cost hold.
if cmp(exact(balance, { overdraft }, {}), '0') <= 0 then
  return { 0, 'credit', balance, held_before, amount, '0', '' }
end

-- 4. Headroom: the least of balance − held + overdraft and each window's limit − used, exact.
local headroom = exact(balance, { prev, overdraft }, { held_before })
local binding, binding_used, binding_reset = 'credit', '0', ''
local windows = {}
local w = 13
for i = 7, #KEYS do
  local name, limit = ARGV[w], ARGV[w + 1]
  w = w + 2
  local s, e = bounds(name, now)
  local key = KEYS[i] .. ':' .. string.format('%d', s)
  local used = redis.call('GET', key) or '0'
  if prev_windows[key] then used = exact(used, {}, { prev }) end
  local room = exact(limit, {}, { used })
  windows[#windows + 1] = { key = key, e = e }
  if cmp(room, headroom) < 0 then
    headroom, binding, binding_used = room, name, used
    binding_reset = e and string.format('%d', e) or ''
  end
end

local function refuse(required)
  return { 0, binding, balance, held_before, required, binding_used, binding_reset }
end

-- 5. Admission: the full worst case fits, or (clamp) the largest max_tokens that fits down to
--    the floor, or a refusal naming what binds.
local tokens = ARGV[9] ~= '' and ARGV[9] or '-1'
if cmp(headroom, amount) < 0 then
  if policy ~= 'clamp' then return refuse(amount) end
  if cmp(headroom, ARGV[11]) < 0 then return refuse(ARGV[11]) end
  -- Every value here is at most the hold at max tokens, which the caller keeps < 2^53, so these
  -- doubles are exact integers; the loop corrects a quotient that rounded up. The headroom
  -- above base is spent over the segments in order: one that fits whole adds its tokens, the
  -- first that does not adds what is left / its rate and ends the count (never below the
  -- floor, whose hold fits); past the last segment tokens are free.
  local b, max = tonumber(ARGV[7]), tonumber(ARGV[9])
  local room, t, ended = tonumber(headroom) - b, 0, false
  local segs = {}
  for p, n in string.gmatch(ARGV[8], '(%d+):(%d*)') do
    segs[#segs + 1] = { tonumber(p), n ~= '' and tonumber(n) or nil }
  end
  for _, s in ipairs(segs) do
    local p, n = s[1], s[2]
    if p == 0 then
      t = n and t + n or max
    elseif n and n * p <= room then
      room = room - n * p
      t = t + n
    else
      local u = math.floor(room / p)
      while u * p > room do u = u - 1 end
      t = t + u
      ended = true
    end
    if ended or not n or t >= max then break end
  end
  if not ended and (#segs == 0 or segs[#segs][2]) then t = max end
  if t > max then t = max end
  local held, left = b, t
  for _, s in ipairs(segs) do
    if left <= 0 then break end
    local take = (s[2] and s[2] < left) and s[2] or left
    held = held + take * s[1]
    left = left - take
  end
  amount = string.format('%d', held)
  tokens = string.format('%d', t)
end

-- 6. Reserve: drop the previous hold of this id (and its window share), then count the new
--    amount in held and in every window, which expires a day after it ends.
if previous then
  redis.call('DECRBY', held_key, previous)
  for k in pairs(prev_windows) do
    if redis.call('EXISTS', k) == 1 then redis.call('DECRBY', k, previous) end
  end
end
redis.call('INCRBY', held_key, amount)
redis.call('HSET', holds_key, hold_id, amount)
redis.call('ZADD', expiry_key, string.format('%d', now + ttl), hold_id)
local names = {}
for _, win in ipairs(windows) do
  redis.call('INCRBY', win.key, amount)
  if win.e then redis.call('PEXPIREAT', win.key, string.format('%d', win.e + 86400000)) end
  names[#names + 1] = win.key
end
-- The windows it is counted in, kept past the hold's expiry (an expired hold stays counted):
-- with the hold, the usage apply's proof that the windows have this request (usage-fn.lua).
if #names > 0 then
  redis.call('HSET', hwin_key, hold_id, table.concat(names, '\n'))
  redis.call('PEXPIRE', hwin_key, 8 * 86400000)
elseif previous then
  redis.call('HDEL', hwin_key, hold_id)
end
tidy_held(held_key)
return { 1, amount, tokens, balance, redis.call('GET', held_key) or '0' }
