-- The Cluster layout's take of the restorers (take-restorers.lua, prepended).
-- KEYS[1] `<ready>:restorers`, KEYS[2] `<ready>:record-restorers`, KEYS[3] `<ready>:pending`;
-- ARGV[1] the longest wait, ms; ARGV[2..] the control processes seen holding records before the
-- loss. Returns 1 when some process had announced (or was seen holding), else 0.
local holders = {}
for i = 2, #ARGV do holders[#holders + 1] = ARGV[i] end
return take_restorers(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), holders) and 1 or 0
