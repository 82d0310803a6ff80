-- Ledger consumer: credit (or debit) a grant, refund or adjustment, exactly once, forever.
-- KEYS[1] ledger (hash event_id -> amount), KEYS[2] bal:{account}
-- ARGV[1] event_id, ARGV[2] signed amount (integer string)
-- Returns 1 when applied, 0 when the event_id was already in the ledger (nothing changes).
-- Invariant: each ledger event_id changes the balance at most once, ever; the ledger entry
-- and the balance change happen together.
local ledger_key, bal_key = KEYS[1], KEYS[2]
local event_id, amount = ARGV[1], ARGV[2]

-- 1. Idempotency: a repeated reference never pays twice.
if redis.call('HEXISTS', ledger_key, event_id) == 1 then return 0 end

-- 2. Credit first: if it failed (64-bit overflow) no entry is recorded and a retry can apply it.
redis.call('INCRBY', bal_key, amount)

-- 3. Record the entry with its amount (kept forever; answers repeated references).
redis.call('HSET', ledger_key, event_id, amount)
return 1
