-- sip-redirect: what the registrar needs to check one set of digest credentials (DESIGN §5-6).
-- KEYS[1]  sipr:sub:{aor}       the subscriber (written by sip-locctl user add): HA1s, enabled,
--                                realm, algorithms (its digest algorithms; optional)
-- KEYS[2]  sipr:authfail:{aor}:<source>  the asking source's failures in the window (auth_failure.lua)
-- Returns  {failures, field, value, field, value, ...}: the count (0 when none) and the subscriber
--          hash (no fields when there is no such subscriber). Reads only.
local failures = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local sub = redis.call('HGETALL', KEYS[1])
table.insert(sub, 1, failures)
return sub
