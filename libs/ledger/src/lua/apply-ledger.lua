-- Ledger consumer: one ledger event (see ledger-fn.lua, prepended with position.lua).
return apply_ledger(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
