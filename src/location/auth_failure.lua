-- sip-redirect: count one failed digest authentication of an AOR (DESIGN §5; the lock-out).
-- KEYS[1]  sipr:authfail:{aor}
-- ARGV     window seconds, limit, cool-down seconds
-- Returns  the failures counted in the window, this one included. The first failure opens a
--          window of ARGV[1] seconds; the one that reaches the limit sets the key to live for the
--          cool-down instead, and the registrar answers 403 while the count is at the limit, so the
--          lock-out ends when the key expires. Later failures never extend it.
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
if n == tonumber(ARGV[2]) then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return n
