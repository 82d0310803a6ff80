-- Ledger consumer: debit one request's actual cost and close its hold, exactly once.
-- Prepended with expire-holds.lua, windows-fn.lua and position.lua.
-- Used by apply-usage.lua (one event) and apply-batch.lua. Arguments, in order:
-- KEYS[1] u:<event_id> (remembered for usageMemoryMs; holds the epoch it was applied in), KEYS[2] bal:{account},
-- KEYS[3] held:{account}, KEYS[4] holds:{account}, KEYS[5] hexp:{account},
-- KEYS[6] pos (hash of applied positions), KEYS[7] accounts (set of account ids),
-- KEYS[8] hwin:{account} (hold id -> spend window counters; hold.lua's marker)
-- ARGV[1] event_id (= holdId), ARGV[2] cost (integer string), ARGV[3] memory in ms,
-- ARGV[4] account id, ARGV[5] position field or '', ARGV[6] offset or '', ARGV[7] ready key or '',
-- ARGV[8] the event's key id, ARGV[9] the event's ts (epoch ms), ARGV[10] the account's spend
-- window base (P sw:{account}), ARGV[11] now override in ms or '' (tests)
-- Returns 1 applied, 0 duplicate (nothing changes but the position), -1 gap, -2 not ready.
-- Invariants: each event debits the balance at most once (by offset, and by event_id within
-- the memory window), and the debit, the closing of the hold and the position move together.
-- Every applied usage is counted once in the spend windows still open: through its hold
-- (hold.lua counted it in the windows its key had limits for, and named them in hwin; settle
-- and this step move them to the cost), or, with no hold and no hwin entry and never applied
-- here (its hold was lost with Redis, made before a rebuild, or expired without windows), by
-- the event itself in all five (count_windows), as the rebuild counts the events it read.
-- ctx: the position, account-set and hold-closing steps (position.lua: direct_ctx for one
-- event, batch_ctx for apply-batch.lua, which reads and writes each once per call).
-- win: { base = the account's spend window base (P sw:{account}) or nil, then derived from
-- prefix and hwin (P hwin:<tag> -> P sw:<tag>), only when the event counts its own windows;
-- key = key id, ts = ts ms (number or integer string), now = ms }. apply-batch.lua reuses one
-- table for the whole call.
-- Returns the verdict and, when applied, the balance it left as an integer string.
-- Cost per applied event with its hold (the common path): three Redis calls of its own (SET,
-- DECRBY, HGET), none of them a read that another call already answers (the marker's GET is
-- SET's GET option, the balance is DECRBY's reply), and the hold's closing (ctx.close: four
-- calls, which a batch makes for an account's first event and once more for all its others
-- together); docs/decisions.md, "The usage apply reads nothing another call already answers"
-- and "A batch closes its holds together".
local MAX_EXACT = 9007199254740992 -- 2^53: every integer of smaller magnitude is a Lua double
local function apply_usage(ctx, seen_key, bal_key, held_key, holds_key, expiry_key, hwin_key,
                           event_id, cost, memory_ms, account, field, offset, win)
  -- 1. Position: an offset already applied is a no-op; a gap or lost state is the caller's to fix.
  local verdict = ctx.check(field, offset)
  if verdict then return verdict end

  -- 2. Idempotency by id: a producer-side duplicate (a spool re-send) at a new offset is a no-op.
  -- The marker counts only in the epoch it was written in (ctx.epoch, see position.lua): one
  -- left by an effect a rebuild discarded must not turn the replay of that event into a no-op.
  -- One call writes the marker (remembered for memory_ms) and answers the one it replaced: a
  -- duplicate only renews it (the same value, a later expiry: remembered a little longer).
  local seen = redis.call('SET', seen_key, ctx.epoch, 'PX', memory_ms, 'GET')
  if seen == ctx.epoch then
    ctx.advance(field, offset)
    return 0
  end

  -- 3. Debit. If it fails (a 64-bit overflow) the marker is put back as it was and the error
  --    raised: the event wrote nothing (an older epoch's marker comes back with a fresh expiry;
  --    it only ever says "counted in the windows then", step 6).
  local balance = redis.pcall('DECRBY', bal_key, cost)
  if type(balance) == 'table' then
    if seen then redis.call('SET', seen_key, seen, 'PX', memory_ms) else redis.call('DEL', seen_key) end
    error(balance)
  end
  ctx.account(account)
  ctx.advance(field, offset)

  -- 4. Close the request's hold: the usage replaces the reservation. No hold, no expiry entry
  --    (every script removes the two together; one left by lost data is dropped when it falls
  --    due, expire-holds.lua).
  local amount = redis.call('HGET', holds_key, event_id)
  if amount then
    -- Settled at the actual cost (settle.lua moved its windows): nothing to move. Else the
    -- spend windows still open count the actual cost from now on.
    if amount ~= cost then
      local marker = redis.call('HGET', hwin_key, event_id)
      if marker then
        for k in string.gmatch(marker, '[^\n]+') do
          if redis.call('EXISTS', k) == 1 then
            redis.call('DECRBY', k, amount)
            redis.call('INCRBY', k, cost)
          end
        end
      end
    end
    -- The hold's entries (holds, hexp, hwin) and its amount in held go: at once, or with the
    -- batch's other closings when the script ends (ctx.close, position.lua).
    ctx.close(holds_key, expiry_key, hwin_key, held_key, event_id, amount)
  else
    -- 5. The spend windows. An hwin entry (also one left by a hold that expired: it stays
    --    counted at its amount, erring toward the limit) means the windows have this request; it
    --    goes now. No hold and no entry, and never applied here (a usage id of an earlier epoch
    --    means the windows, which a rebuild keeps, counted it then): count the event itself.
    local had_marker = redis.call('HDEL', hwin_key, event_id) == 1
    if not had_marker and not seen and cost ~= '0' then
      local base = win.base or (win.prefix .. 'sw:' .. string.sub(hwin_key, #win.prefix + 6))
      count_windows(base, win.key, tonumber(win.ts), cost, win.now)
    end
  end

  -- The balance as Redis holds it: DECRBY's reply is a double, exact below 2^53 (a larger one
  -- rounds to 2^53 or beyond, so the check is exact too); beyond, read the string.
  if balance > -MAX_EXACT and balance < MAX_EXACT then return 1, string.format('%d', balance) end
  return 1, redis.call('GET', bal_key)
end
