-- The Cluster layout's take of the restorers (take-restorers.lua, prepended).
-- KEYS[1] `<ready>:restorers`, KEYS[2] `<ready>:record-restorers`, KEYS[3] `<ready>:pending`;
-- ARGV[1] the longest wait, ms. Returns 1 when some process had announced, else 0.
return take_restorers(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1])) and 1 or 0
