-- Keep a live request's hold (a long stream) from expiring. Prepended with expire-holds.lua.
-- KEYS[1] holds:{account}, KEYS[2] hexp:{account}; ARGV[1] holdId, ARGV[2] ttl in ms, ARGV[3] test clock or ''
-- Returns 1 if the hold existed, 0 if it is gone (then nothing is recreated).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], string.format('%d', now_ms(ARGV[3]) + tonumber(ARGV[2])), ARGV[1])
return 1
