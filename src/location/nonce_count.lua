-- sip-redirect: digest nonce-count replay protection shared by every registrar (RFC 7616 §3.4).
-- KEYS[1]  sipr:nc:{aor}:<nonce>
-- ARGV     nc (decimal), seconds the nonce may still be accepted
-- Returns  1 when nc is above every nc seen with this nonce for this AOR (it is then stored, to
--          expire with the nonce), else 0: a replay, nothing written.
local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local nc = tonumber(ARGV[1])
if nc == nil or nc <= last then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
