-- Ledger consumer: set aside an event it cannot apply (poison) and move the log position past
-- it, in one atomic step: a position left before it would make every later event of the
-- partition a gap, and a position moved without the record would lose the evidence.
-- Prepended with position.lua.
-- KEYS[1] quarantine (hash `topic:partition:offset` or event id -> JSON record), KEYS[2] pos,
-- KEYS[3] rejected (hash event id -> reason; what a waiting control request answers from),
-- KEYS[4] ledger (hash of applied ledger event ids)
-- ARGV[1] record field, ARGV[2] record JSON, ARGV[3] position field or '', ARGV[4] offset or '',
-- ARGV[5] ready key or '', ARGV[6] event id, ARGV[7] reason, '' when the record is not a refusal
-- to apply (an event nothing could decode: the id stays open for a valid event)
-- Returns 1 quarantined, 0 duplicate, -1 gap, -2 not ready.
local quarantine_key, pos_key, rejected_key, ledger_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local record_field, record, field, offset, ready_key = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local verdict = check_position(ready_key, pos_key, field, offset)
if verdict then return verdict end

if redis.call('HSETNX', quarantine_key, record_field, record) == 0 then
  advance_position(pos_key, field, offset)
  return 0
end
-- An id already applied (a redelivered copy went bad) keeps its applied outcome.
if ARGV[7] ~= '' and redis.call('HEXISTS', ledger_key, ARGV[6]) == 0 then redis.call('HSET', rejected_key, ARGV[6], ARGV[7]) end
advance_position(pos_key, field, offset)
return 1
