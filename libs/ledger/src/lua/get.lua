-- Read one account's balance and held sum after expiring its stale holds, so the answer
-- matches what the next hold would see. Prepended with expire-holds.lua.
-- KEYS[1] bal:{account}, KEYS[2] held:{account}, KEYS[3] holds:{account}, KEYS[4] hexp:{account}
-- ARGV[1] test clock or ''
-- Returns { balance, held } as integer strings.
-- Invariant: held = Σ holds hash; expired holds are gone afterwards.
expire_holds(KEYS[2], KEYS[3], KEYS[4], now_ms(ARGV[1]))
return { redis.call('GET', KEYS[1]) or '0', redis.call('GET', KEYS[2]) or '0' }
