-- sip-redirect: digest nonce-count replay protection shared by every registrar (RFC 7616 §3.4).
-- KEYS[1]  sipr:nc:{aor}:<nonce>     the highest nc accepted with this nonce for this AOR
-- KEYS[2]  sipr:ncreq:{aor}:<nonce>  "<fingerprint> <unix ms>" of the request that nc was accepted for
-- ARGV     nc (decimal), seconds the nonce may still be accepted, the request's fingerprint (no
--          spaces), now (unix ms, the registrar's clock)
-- Returns  {1, 0} when nc is above every nc seen with this nonce for this AOR (it is stored, and
--          the request's fingerprint and now with it, both to expire with the nonce);
--          {2, first_ms} when nc is the last one accepted and the fingerprint that request's: the
--          same request again (a retransmission, if first_ms is recent: the registrar decides);
--          {0, 0} otherwise: a replay. Nothing is written unless nc is fresh.
local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local nc = tonumber(ARGV[1])
if nc == nil then
  return {0, 0}
end
if nc > last then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  redis.call('SET', KEYS[2], ARGV[3] .. ' ' .. ARGV[4], 'EX', ARGV[2])
  return {1, 0}
end
if nc == last then
  local rec = redis.call('GET', KEYS[2])
  if rec then
    local fp, at = string.match(rec, '^(%S+) (%d+)$')
    if fp ~= nil and fp == ARGV[3] then
      return {2, tonumber(at)}
    end
  end
end
return {0, 0}
