-- Ledger consumer: debit one request's actual cost and close its hold, exactly once.
-- KEYS[1] u:<event_id> (remembered for usageMemoryMs), KEYS[2] bal:{account},
-- KEYS[3] held:{account}, KEYS[4] holds:{account}, KEYS[5] hexp:{account}
-- ARGV[1] event_id (= holdId), ARGV[2] cost (integer string), ARGV[3] memory in ms
-- Returns 1 when applied, 0 when the event was already applied (duplicate: nothing changes).
-- Invariant: each event_id debits the balance at most once within the memory window, and
-- the debit and the closing of the hold happen together (no moment where both count).
local seen_key, bal_key, held_key, holds_key, expiry_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local event_id, cost, memory_ms = ARGV[1], ARGV[2], ARGV[3]

-- 1. Idempotency: a redelivered event is a no-op.
if redis.call('EXISTS', seen_key) == 1 then return 0 end

-- 2. Debit first: if it failed (64-bit overflow) the script would stop before marking the
--    event seen, so a retry could still apply it.
redis.call('DECRBY', bal_key, cost)

-- 3. Remember the event id long enough to catch redeliveries.
redis.call('SET', seen_key, '1', 'PX', memory_ms)

-- 4. Close the request's hold: the usage replaces the reservation.
redis.call('ZREM', expiry_key, event_id)
local amount = redis.call('HGET', holds_key, event_id)
if amount then
  redis.call('DECRBY', held_key, amount)
  redis.call('HDEL', holds_key, event_id)
  if redis.call('GET', held_key) == '0' then redis.call('DEL', held_key) end
end
return 1
