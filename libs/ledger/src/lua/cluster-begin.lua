-- Redis Cluster, before the account calls of a partition batch (see account_ctx in
-- position.lua): the state's generation and the partition-wide positions, read together.
-- KEYS[1] {ledger}ready (holds the generation of the last rebuild), KEYS[2] {ledger}pos
-- (hash `topic:partition` -> last offset whose effects, and every earlier one's, are in)
-- ARGV: the position fields wanted.
-- Returns { generation, offset or false per field }, or { '' } when the state is not ready.
local gen = redis.call('GET', KEYS[1])
if not gen then return { '' } end
if #ARGV == 0 then return { gen } end
local out = redis.call('HMGET', KEYS[2], unpack(ARGV))
table.insert(out, 1, gen)
return out
