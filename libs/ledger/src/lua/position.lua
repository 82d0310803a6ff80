-- Shared by the apply scripts: the log position of an event is checked and stored in the same
-- atomic step as its effect ("progress stored with the effect"), so a rebuilt state resumes
-- exactly after the positions it was rebuilt at.
-- pos_key: hash `${topic}:${partition}` -> last applied offset; ready_key: set once hot state
-- is known complete (by a rebuild, or at the first start); field/offset '' = no durable log.
-- Returns nil to go on, or 0 (duplicate: at or before the stored offset), -1 (gap: events
-- between the stored offset and this one were not applied here), -2 (state not ready).
-- Offsets are compared as Lua numbers: exact below 2^53, far beyond any Kafka partition.
local function check_position(ready_key, pos_key, field, offset)
  if ready_key ~= '' and redis.call('EXISTS', ready_key) == 0 then return -2 end
  if offset == '' then return nil end
  local stored = tonumber(redis.call('HGET', pos_key, field) or '-1')
  local off = tonumber(offset)
  if off <= stored then return 0 end
  if off > stored + 1 then return -1 end
  return nil
end

local function advance_position(pos_key, field, offset)
  if offset ~= '' then redis.call('HSET', pos_key, field, offset) end
end

-- The steps the apply functions (usage-fn.lua, ledger-fn.lua) take besides their effect:
-- check and advance the position, and record the account in the accounts set.
-- direct_ctx: straight to Redis, for a script that applies one event.
-- epoch: what a usage id marker must hold to count (usage-fn.lua). A rebuild discards every
-- effect after its snapshot, so the markers of those effects must stop counting with it:
-- standalone, load.lua writes a fresh random epoch in the pos hash under EPOCH_FIELD (a field
-- no `topic:partition` can be: Kafka topic names have no '#') in the same atomic step as the
-- state; '1' before any such load (what markers held before epochs existed). On a Cluster the
-- epoch is the rebuild's generation (account_ctx).
local EPOCH_FIELD = '#epoch'
local function epoch_of(pos_key)
  return redis.call('HGET', pos_key, EPOCH_FIELD) or '1'
end

-- Closing a hold once its usage is applied (usage-fn.lua, step 4): its field in holds:{A}, its
-- entry in hexp:{A} and its window marker in hwin:{A} go, and its amount leaves held:{A}
-- (deleted when that reaches 0). At once here, for a script that applies one event. Returns
-- held's new value (DECRBY's reply, a Lua number: exact below 2^53).
local function close_hold(holds_key, expiry_key, hwin_key, held_key, event_id, amount)
  redis.call('HDEL', holds_key, event_id)
  redis.call('ZREM', expiry_key, event_id)
  redis.call('HDEL', hwin_key, event_id)
  -- DECRBY answers the new value: no GET to tidy a zero.
  local held = redis.call('DECRBY', held_key, amount)
  if held == 0 then redis.call('DEL', held_key) end
  return held
end

-- The same closings for a batch script, most of them deferred to its flush(): per account, the
-- closed holds' ids removed with one HDEL of holds, one ZREM of hexp and one HDEL of hwin, and
-- held lowered by one DECRBY of their amounts' sum. A few calls per account of the call
-- instead of four per event (docs/decisions.md, "A batch closes its holds together").
-- The state is the one closing each at once leaves, and every error comes where it would (in
-- the event's pcall: that event fails, the call stops), never in the flush:
-- - An account's first closing in the call is made at once (close_hold). Its HDEL, ZREM,
--   HDEL and DECRBY succeeding show the four keys of the right kinds and held an integer;
--   nothing in a batch script changes a key's kind, so the flush's calls cannot fail on them.
-- - Only an amount in DECRBY's own syntax, not negative, of at most 15 digits is deferred, and
--   only while the deferred sum stays below 2^53 (a Lua number is exact there) and held was
--   above -9e18 when last read: lowering it by less than 2^53 then stays above -2^63, so
--   neither the deferred DECRBY nor the ones it stands for can overflow.
-- - Any other amount (negative: a hold settled below zero raises held; too long; malformed)
--   first lowers held by the sum deferred so far, then is taken at once: the arithmetic on
--   held keeps the events' order, so an overflow fails the same event as one by one.
-- - Nothing later in a call reads a closed hold's entries (an event id is applied once: a
--   second one is a duplicate by its marker before it reaches its hold), absent held reads as
--   0 (so the tidy DEL at 0 ends in the same state), and a script runs atomically.
local MAX_SUM = 9007199254740992
local HELD_FLOOR = -9e18 -- held above it can take a deferred sum (< 2^53) without passing -2^63
local REMOVE_CHUNK = 1000
local function hold_closer()
  -- per account (its held key): its keys, the ids whose entries go at the flush, the deferred sum
  local groups, order = {}, {}
  local function lower(held_key, g)
    if g.sum > 0 then
      local held = redis.call('DECRBY', held_key, string.format('%d', g.sum))
      if held == 0 then redis.call('DEL', held_key) end
      g.sum = 0
      g.deferrable = held > HELD_FLOOR
    end
  end
  local closer = {}
  closer.close = function(holds_key, expiry_key, hwin_key, held_key, event_id, amount)
    local g = groups[held_key]
    if not g or g.holds ~= holds_key or g.expiry ~= expiry_key or g.hwin ~= hwin_key then
      -- the account's first (the other test never holds: one account, one set of keys)
      local held = close_hold(holds_key, expiry_key, hwin_key, held_key, event_id, amount)
      if not g then
        groups[held_key] = { holds = holds_key, expiry = expiry_key, hwin = hwin_key, sum = 0, deferrable = held > HELD_FLOOR }
        order[#order + 1] = held_key
      end
      return
    end
    g[#g + 1] = event_id
    -- DECRBY's own integer syntax (no sign, no leading zero), 15 digits at most: exact
    local n = #amount <= 15 and (amount == '0' or string.match(amount, '^[1-9]%d*$')) and tonumber(amount)
    if n and g.deferrable and g.sum + n < MAX_SUM then
      g.sum = g.sum + n
    else
      lower(held_key, g)
      local held = redis.call('DECRBY', held_key, amount)
      if held == 0 then redis.call('DEL', held_key) end
      g.deferrable = held > HELD_FLOOR
    end
  end
  closer.flush = function()
    for _, held_key in ipairs(order) do
      local g = groups[held_key]
      for i = 1, #g, REMOVE_CHUNK do
        local j = math.min(i + REMOVE_CHUNK - 1, #g)
        redis.call('HDEL', g.holds, unpack(g, i, j))
        redis.call('ZREM', g.expiry, unpack(g, i, j))
        redis.call('HDEL', g.hwin, unpack(g, i, j))
      end
      lower(held_key, g)
    end
    groups, order = {}, {}
  end
  return closer
end

local function direct_ctx(ready_key, pos_key, accounts_key)
  return {
    epoch = epoch_of(pos_key),
    check = function(field, offset) return check_position(ready_key, pos_key, field, offset) end,
    advance = function(field, offset) advance_position(pos_key, field, offset) end,
    account = function(account) redis.call('SADD', accounts_key, account) end,
    close = close_hold,
  }
end

-- batch_ctx: for apply-batch.lua. A script runs atomically, so within one call the ready
-- marker is read once, each partition's position is read once and kept here, and each
-- account is added once; flush() closes the holds left to it (hold_closer) and writes the
-- positions reached. Same outcome as direct_ctx event by event, as long as flush() runs before
-- the script returns, whatever way it returns.
local function batch_ctx(ready_key, pos_key, accounts_key)
  local ready = ready_key == '' or redis.call('EXISTS', ready_key) == 1
  local stored, dirty, added = {}, {}, {}
  local closer = hold_closer()
  local ctx = { epoch = epoch_of(pos_key), close = closer.close }
  ctx.check = function(field, offset)
    if not ready then return -2 end
    if offset == '' then return nil end
    if stored[field] == nil then stored[field] = tonumber(redis.call('HGET', pos_key, field) or '-1') end
    local off = tonumber(offset)
    if off <= stored[field] then return 0 end
    if off > stored[field] + 1 then return -1 end
    return nil
  end
  ctx.advance = function(field, offset)
    if offset ~= '' then
      stored[field] = tonumber(offset)
      dirty[field] = offset
    end
  end
  ctx.account = function(account)
    if not added[account] then
      redis.call('SADD', accounts_key, account)
      added[account] = true
    end
  end
  ctx.flush = function()
    closer.flush()
    for field, offset in pairs(dirty) do redis.call('HSET', pos_key, field, offset) end
    dirty = {}
  end
  return ctx
end

-- account_ctx: for apply-batch.lua on Redis Cluster, where a call holds the events of ONE
-- account (every key in its hash slot). The partition-wide position lives in another slot, so
-- the caller checks it before the call (an event at or before it is a duplicate, one past it +1
-- a gap) and advances it after every account's call; it lags the effects, never leads them.
-- Here each account keeps its own last applied offset per partition (apos_key, hash
-- `topic:partition` -> offset): events of one account in one partition are applied in log
-- order, so an offset at or before it was applied (a replay after a crash between the account
-- calls and the partition advance is all duplicates). `marker_key` is the ready marker of the
-- account's slot; it must hold `gen`, the generation the caller read with the partition
-- positions: a rebuild in between changes it, and the call answers not ready instead of
-- applying onto state the caller's positions no longer describe.
local function account_ctx(marker_key, gen, apos_key)
  local ready = redis.call('GET', marker_key) == gen
  local stored, dirty = {}, {}
  local closer = hold_closer()
  local ctx = { epoch = gen, close = closer.close }
  ctx.check = function(field, offset)
    if not ready then return -2 end
    if offset == '' then return nil end
    if stored[field] == nil then stored[field] = tonumber(redis.call('HGET', apos_key, field) or '-1') end
    if tonumber(offset) <= stored[field] then return 0 end
    return nil
  end
  ctx.advance = function(field, offset)
    if offset ~= '' then
      stored[field] = tonumber(offset)
      dirty[field] = offset
    end
  end
  -- No accounts set on a Cluster (it would be a store-wide key): balances are found by SCAN.
  ctx.account = function(account) end
  ctx.flush = function()
    closer.flush()
    for field, offset in pairs(dirty) do redis.call('HSET', apos_key, field, offset) end
    dirty = {}
  end
  return ctx
end
