-- For events whose effect lives outside this store (control records, idempotent by version).
-- Prepended with position.lua. KEYS[1] pos; ARGV[1] field, ARGV[2] offset, ARGV[3] ready key or ''
-- Returns 1 to go on, 0 duplicate, -1 gap, -2 not ready.
local verdict = check_position(ARGV[3], KEYS[1], ARGV[1], ARGV[2])
if verdict then return verdict end
return 1
