-- Control API: claim a credit reference (ledger event id) for one grant, atomically, so exactly
-- one of many concurrent requests publishes it. The claim lapses after ttl ms: a claimant that
-- died before publishing never blocks the reference for good.
-- KEYS[1] ledger (hash event_id -> applied entry), KEYS[2] claim:<event_id>,
-- KEYS[3] rejected (hash event_id -> reason of the quarantine): a reference the ledger refused
-- stays refused, so an event id is one decision for good
-- ARGV[1] event_id, ARGV[2] the entry claimed ('<amount> <kind>', encodeLedgerEntry), ARGV[3] ttl in ms
-- Returns { 1, entry } claimed, { 0, entry } already applied or claimed (for that entry, which
-- may differ from ARGV[2]: the caller compares), or { 2, reason } refused by the ledger.
local applied = redis.call('HGET', KEYS[1], ARGV[1])
if applied then return { 0, applied } end
local refused = redis.call('HGET', KEYS[3], ARGV[1])
if refused then return { 2, refused } end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return { 1, ARGV[2] } end
return { 0, redis.call('GET', KEYS[2]) }
