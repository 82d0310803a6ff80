-- The state's epoch (the ready key's value, which every load replaces), read by each gateway's
-- hold registry every poll; and, while the state is lost (no ready key) and the caller has
-- requests in flight (ARGV[1] > 0), in the same step the announcement that makes the next load
-- hold new admissions back for its restore window (`<ready>:restorers`, PX ARGV[1]; load.lua and
-- the Cluster's ready pass take it). One step, so no load can come between the read and the
-- announcement.
-- KEYS[1] the ready key; KEYS[2] (Cluster only) the layout key, which must hold ARGV[2].
-- Returns the epoch, or false while the state is lost or in another layout.
local v = redis.call('GET', KEYS[1])
if v and KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[2] then v = false end
local announce = tonumber(ARGV[1]) or 0
if not v and announce > 0 then redis.call('SET', KEYS[1] .. ':restorers', '1', 'PX', announce) end
return v
