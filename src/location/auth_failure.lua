-- sip-redirect: count one failed digest authentication of an AOR from one source (DESIGN §5; the
-- lock-out).
-- KEYS[1]  sipr:authfail:{aor}:<source>  the source: an IPv4 address or an IPv6 /64
-- KEYS[2]  sipr:sub:{aor}                the subscriber
-- ARGV     window seconds, limit, cool-down seconds
-- Returns  the failures from that source counted in the window, this one included; 0 (nothing
--          written) when the AOR is no subscriber, so guesses at AORs that do not exist leave no
--          key behind. The first failure opens a window of ARGV[1] seconds; the one that reaches
--          the limit sets the key to live for the cool-down instead, and the registrar answers 403
--          to that source while the count is at the limit, so the lock-out ends when the key
--          expires. Later failures never extend it. Other sources are not locked out.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
if n == tonumber(ARGV[2]) then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return n
