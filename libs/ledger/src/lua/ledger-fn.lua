-- Ledger consumer: credit (or debit) a grant, refund or adjustment, exactly once, forever.
-- Prepended with position.lua.
-- Used by apply-ledger.lua (one event) and apply-batch.lua. Arguments, in order:
-- KEYS[1] ledger (hash event_id -> entry), KEYS[2] bal:{account}, KEYS[3] pos, KEYS[4] accounts
-- ARGV[1] event_id, ARGV[2] signed amount (integer string), ARGV[3] account id,
-- ARGV[4] position field or '', ARGV[5] offset or '', ARGV[6] ready key or '',
-- ARGV[7] money bound (2^53 - 1, integer string), ARGV[8] the entry's kind (grant, top_up,
-- refund, adjustment): the entry is kept as '<amount> <kind>' (encodeLedgerEntry);
-- rejected_key (KEYS[5] for apply-ledger.lua): the hash of ids the ledger refused
-- Returns 1 applied, 0 duplicate, -1 gap, -2 not ready, -3 out of range (nothing changed, the
-- position did not move: the consumer quarantines the event, which moves it).
-- Invariant: each ledger event_id changes the balance at most once, ever; the entry, the
-- balance change and the position move together.
-- ctx: as for usage-fn.lua.
local function apply_ledger(ctx, ledger_key, bal_key, event_id, amount, account, field, offset, bound_text, kind, rejected_key)
  local bound = tonumber(bound_text)

  -- 1. Position first (see position.lua).
  local verdict = ctx.check(field, offset)
  if verdict then return verdict end

  -- 2. Idempotency: a repeated reference never pays twice, and an id the ledger refused stays
  -- refused (one event id, one decision: a later event under it is a duplicate id, whatever
  -- it says; the warehouse keeps the first and leaves a refused id out of every balance).
  if redis.call('HEXISTS', ledger_key, event_id) == 1 or redis.call('HEXISTS', rejected_key, event_id) == 1 then
    ctx.advance(field, offset)
    return 0
  end

  -- 3. Credit, with the bound in the same step (a check in the control API races with other
  -- control processes). Redis adds exactly (signed 64 bits; an overflow errors before any write).
  -- Its reply becomes a Lua double, yet the comparison is exact: every integer of magnitude
  -- <= 2^53 - 1 is a double, and a true sum beyond the bound rounds (monotonically) to a double
  -- of magnitude >= 2^53. Out of range, the old value is put back as it was: no one saw it.
  local before = redis.call('GET', bal_key)
  local after = redis.call('INCRBY', bal_key, amount)
  if after > bound or after < -bound then
    if before then redis.call('SET', bal_key, before) else redis.call('DEL', bal_key) end
    return -3
  end
  ctx.account(account)

  -- 4. Record the entry with its amount and kind (kept forever; answers repeated references:
  -- the same entry is a duplicate, another amount or kind a conflict).
  redis.call('HSET', ledger_key, event_id, amount .. ' ' .. kind)
  ctx.advance(field, offset)
  return 1
end
