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

local function direct_ctx(ready_key, pos_key, accounts_key)
  return {
    epoch = epoch_of(pos_key),
    check = function(field, offset) return check_position(ready_key, pos_key, field, offset) end,
    advance = function(field, offset) advance_position(pos_key, field, offset) end,
    account = function(account) redis.call('SADD', accounts_key, account) end,
  }
end

-- batch_ctx: for apply-batch.lua. A script runs atomically, so within one call the ready
-- marker is read once, each partition's position is read once and kept here, and each
-- account is added once; flush() writes the positions reached. Same outcome as direct_ctx
-- event by event, as long as flush() runs before the script returns, whatever way it returns.
local function batch_ctx(ready_key, pos_key, accounts_key)
  local ready = ready_key == '' or redis.call('EXISTS', ready_key) == 1
  local stored, dirty, added = {}, {}, {}
  local ctx = { epoch = epoch_of(pos_key) }
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
  local ctx = { epoch = gen }
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
    for field, offset in pairs(dirty) do redis.call('HSET', apos_key, field, offset) end
    dirty = {}
  end
  return ctx
end
