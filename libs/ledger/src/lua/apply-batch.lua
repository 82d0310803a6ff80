-- Ledger consumer: a batch of usage and ledger events of ONE log partition, in log order, in one
-- script call (one round trip instead of one per event). Prepended with expire-holds.lua,
-- windows-fn.lua, position.lua, usage-fn.lua and ledger-fn.lua: each event runs exactly the single-event logic, so each one's
-- effect and its position still move together ("progress stored with the effect"), and a
-- redelivered batch is a run of duplicates.
-- Two layouts (ARGV[5]):
-- - '' (standalone Redis): any accounts, one call per partition batch.
--   KEYS[1] pos, KEYS[2] accounts, KEYS[3] ledger, KEYS[4] rejected; ARGV[1] ready key or ''; ARGV[6] the key
--   prefix. The per-event keys are NOT declared: the script derives them from the prefix, the
--   event id and the account id exactly as redis-balance-store.ts names them (u:<id>,
--   bal:{A}, held:{A}, holds:{A}, hexp:{A}, hwin:{A}). Declaring them cost the caller six
--   arguments per event to encode; standalone Redis has no slot to check (docs/decisions.md).
-- - 'a' (Redis Cluster: ONE account A, so every key is in A's hash slot): the events of A in
--   a partition batch. KEYS[1] pos:{A} (A's own positions), KEYS[2] the ready marker of A's
--   slot, KEYS[3] ledger:{A}, KEYS[4] rejected:{A}; ARGV[1] the generation the marker must hold (else not ready:
--   a rebuild ran since the caller read the partition positions). No gap check here: the
--   caller checked the partition-wide position (see account_ctx in position.lua). The
--   per-event keys ARE declared (the Cluster routes and checks by them), in order:
--     usage:  u:{A}:<event_id>, bal:{A}, held:{A}, holds:{A}, hexp:{A}, hwin:{A}   (6 keys)
--     ledger: bal:{A}                                                           (1 key)
-- ARGV[2] usage memory ms, ARGV[3] money bound (2^53 - 1),
-- ARGV[4] '1' to answer the balance after each applied usage debit, else ''; ARGV[5] layout;
-- ARGV[6] the key prefix (both layouts: a usage event's spend-window counters are named from it
-- and its hwin key, see usage-fn.lua); ARGV[7] now override in ms or '' (tests); then ONE
-- argument per event, packed (one argument instead of six is most of the caller's encoding cost):
--   <type><amount><ledger kind> <offset> <id bytes> <account bytes> <ts> <key bytes> <event_id><account id><key id><position field>
-- type 'u' or 'l'; amount a signed integer; ledger kind (grant, top_up, refund, adjustment)
-- for 'l', nothing for 'u'; offset digits or '' (no position); the byte lengths say where
-- event_id, the account id and the key id end, so they may hold any bytes (spaces included);
-- ts the usage event's epoch ms ('' and key bytes 0 for 'l'); the position field ('' or
-- topic:partition) is the rest.
-- Returns a flat array, two entries per event handled: verdict (1 applied, 0 duplicate,
-- -1 gap, -2 not ready, -3 out of range, -9 failed) and, for an applied usage, the balance it
-- left (integer string; the balance.low trigger compares it), for a failure the error text,
-- else ''. The script stops after the first event that is neither applied nor a duplicate: the
-- caller handles it (rewind, wait, quarantine) and goes on from the event after it.
-- A failure (a 64-bit overflow: poison) is caught with pcall, and the events before it keep
-- their effects and positions (Redis does not roll a script back, nor should it here). A debit
-- that fails writes nothing (usage-fn.lua, step 3); a failure after it, in closing the hold
-- (a key of the wrong kind, held passing ±2^63: states no Tollgate script writes), leaves what
-- the event did before, exactly as the one-event script does (hold_closer in position.lua).
-- Within the call the ready marker, each position and the accounts set are read or written
-- once (batch_ctx in position.lua): the script is atomic, so no one sees the difference.
local pos_key, accounts_key, ledger_key, rejected_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ready_key, memory_ms, bound, want_balance = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local cluster, prefix = ARGV[5] == 'a', ARGV[6] or ''
local now = now_ms(ARGV[7])
local ctx
if cluster then ctx = account_ctx(KEYS[2], ARGV[1], KEYS[1]) else ctx = batch_ctx(ready_key, pos_key, accounts_key) end
local out = {}
local k = 5
local win = { prefix = prefix, now = now } -- usage-fn.lua's, one for the call
local account_keys = {} -- account id -> its bal, held, holds, hexp and hwin keys (standalone layout)
for a = 8, #ARGV do
  local packed = ARGV[a]
  local kind, amount, entry_kind, offset, id_len, account_len, ts, key_len, rest =
    string.match(packed, '^([ul])(%-?%d+)([%l_]*) (%d*) (%d+) (%d+) (%d*) (%d+) ()')
  if not kind or (kind == 'l') == (entry_kind == '') or (kind == 'u') == (ts == '') then
    out[#out + 1] = -9
    out[#out + 1] = 'ERR malformed batch event ' .. (a - 7)
    ctx.flush()
    return out
  end
  local id_end = rest + tonumber(id_len)
  local account_end = id_end + tonumber(account_len)
  local event_id = string.sub(packed, rest, id_end - 1)
  local key_end = account_end + tonumber(key_len)
  local account = string.sub(packed, id_end, account_end - 1)
  local key_id = string.sub(packed, account_end, key_end - 1)
  local field = string.sub(packed, key_end)
  local ok, verdict, balance
  if kind == 'u' then
    local seen_key, bal_key, held_key, holds_key, expiry_key, hwin_key
    if cluster then
      seen_key, bal_key, held_key, holds_key, expiry_key, hwin_key = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
      k = k + 6
    else
      -- An account's keys are named once per call (a drain's call has several events of each).
      local names = account_keys[account]
      if not names then
        local tag = '{' .. account .. '}'
        names = { prefix .. 'bal:' .. tag, prefix .. 'held:' .. tag, prefix .. 'holds:' .. tag, prefix .. 'hexp:' .. tag, prefix .. 'hwin:' .. tag }
        account_keys[account] = names
      end
      seen_key = prefix .. 'u:' .. event_id
      bal_key, held_key, holds_key, expiry_key, hwin_key = names[1], names[2], names[3], names[4], names[5]
    end
    -- The window base is derived from hwin_key only if the event counts its own windows (the
    -- tag as the hwin key has it: on a Cluster, the escaped one).
    win.key, win.ts = key_id, ts
    ok, verdict, balance = pcall(apply_usage, ctx, seen_key, bal_key, held_key, holds_key, expiry_key, hwin_key,
      event_id, amount, memory_ms, account, field, offset, win)
    if ok and verdict == 1 then
      out[#out + 1] = 1
      out[#out + 1] = want_balance and balance or ''
    end
  else
    local bal_key
    if cluster then bal_key = KEYS[k]; k = k + 1 else bal_key = prefix .. 'bal:{' .. account .. '}' end
    ok, verdict = pcall(apply_ledger, ctx, ledger_key, bal_key, event_id, amount, account, field, offset, bound, entry_kind, rejected_key)
    if ok and verdict == 1 then
      out[#out + 1] = 1
      out[#out + 1] = ''
    end
  end
  if not ok then
    out[#out + 1] = -9
    out[#out + 1] = type(verdict) == 'table' and (verdict.err or 'script error') or tostring(verdict)
    ctx.flush()
    return out
  end
  if verdict ~= 1 then
    out[#out + 1] = verdict
    out[#out + 1] = ''
    if verdict ~= 0 then
      ctx.flush()
      return out
    end
  end
end
ctx.flush()
return out
