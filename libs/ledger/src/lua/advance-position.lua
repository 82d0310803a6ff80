-- Prepended with position.lua. KEYS[1] pos; ARGV[1] field, ARGV[2] offset.
-- Only moves forward, so a late or repeated call never rewinds the stored position.
local stored = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > stored then advance_position(KEYS[1], ARGV[1], ARGV[2]) end
return 1
