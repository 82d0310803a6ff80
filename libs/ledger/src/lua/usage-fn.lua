-- Ledger consumer: debit one request's actual cost and close its hold, exactly once.
-- Prepended with position.lua.
-- Used by apply-usage.lua (one event) and apply-batch.lua. Arguments, in order:
-- KEYS[1] u:<event_id> (remembered for usageMemoryMs; holds the epoch it was applied in), KEYS[2] bal:{account},
-- KEYS[3] held:{account}, KEYS[4] holds:{account}, KEYS[5] hexp:{account},
-- KEYS[6] pos (hash of applied positions), KEYS[7] accounts (set of account ids),
-- KEYS[8] hwin:{account} (hold id -> spend window counters)
-- ARGV[1] event_id (= holdId), ARGV[2] cost (integer string), ARGV[3] memory in ms,
-- ARGV[4] account id, ARGV[5] position field or '', ARGV[6] offset or '', ARGV[7] ready key or ''
-- Returns 1 applied, 0 duplicate (nothing changes but the position), -1 gap, -2 not ready.
-- Invariant: each event debits the balance at most once (by offset, and by event_id within
-- the memory window), and the debit, the closing of the hold and the position move together.
-- ctx: the position and account-set steps (position.lua: direct_ctx for one event, batch_ctx
-- for apply-batch.lua, which reads and writes each once per call).
local function apply_usage(ctx, seen_key, bal_key, held_key, holds_key, expiry_key, hwin_key,
                           event_id, cost, memory_ms, account, field, offset)
  -- 1. Position: an offset already applied is a no-op; a gap or lost state is the caller's to fix.
  local verdict = ctx.check(field, offset)
  if verdict then return verdict end

  -- 2. Idempotency by id: a producer-side duplicate (a spool re-send) at a new offset is a no-op.
  -- The marker counts only in the epoch it was written in (ctx.epoch, see position.lua): one
  -- left by an effect a rebuild discarded must not turn the replay of that event into a no-op.
  if redis.call('GET', seen_key) == ctx.epoch then
    ctx.advance(field, offset)
    return 0
  end

  -- 3. Debit first: if it failed (64-bit overflow) the script stops before anything is marked.
  redis.call('DECRBY', bal_key, cost)
  ctx.account(account)

  -- 4. Remember the event id long enough to catch redeliveries, and where the log is.
  redis.call('SET', seen_key, ctx.epoch, 'PX', memory_ms)
  ctx.advance(field, offset)

  -- 5. Close the request's hold: the usage replaces the reservation.
  redis.call('ZREM', expiry_key, event_id)
  local amount = redis.call('HGET', holds_key, event_id)
  if amount then
    redis.call('DECRBY', held_key, amount)
    redis.call('HDEL', holds_key, event_id)
    -- Spend windows still open count the actual cost from now on (usually settle already did).
    for k in string.gmatch(redis.call('HGET', hwin_key, event_id) or '', '[^\n]+') do
      if redis.call('EXISTS', k) == 1 then
        redis.call('DECRBY', k, amount)
        redis.call('INCRBY', k, cost)
      end
    end
    redis.call('HDEL', hwin_key, event_id)
    if redis.call('GET', held_key) == '0' then redis.call('DEL', held_key) end
  end
  return 1
end
