-- Ledger consumer: one ledger event (see ledger-fn.lua; prepended with position.lua and it).
-- KEYS and ARGV as listed in ledger-fn.lua; KEYS[5] rejected.
return apply_ledger(direct_ctx(ARGV[6], KEYS[3], KEYS[4]), KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7], ARGV[8], KEYS[5])
