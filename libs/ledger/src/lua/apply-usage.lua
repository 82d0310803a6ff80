-- Ledger consumer: one usage event (see usage-fn.lua; prepended with expire-holds.lua,
-- windows-fn.lua, position.lua and it). KEYS and ARGV as listed in usage-fn.lua.
return apply_usage(direct_ctx(ARGV[7], KEYS[6], KEYS[7]), KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[8],
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
  { base = ARGV[10], key = ARGV[8], ts = tonumber(ARGV[9]), now = now_ms(ARGV[11]) })
