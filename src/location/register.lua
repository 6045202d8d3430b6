-- sip-redirect: apply one REGISTER to one AOR atomically (RFC 3261 §10.3 steps 6-8, DESIGN §5-6).
-- KEYS[1]  sipr:loc:{aor}
-- ARGV     max_contacts, evict (0|1), flags, call_id, cseq, then per contact:
--          binding key, expires seconds (0 removes), packed tail (cseq onwards)
--          flags: 1 remove all (Contact: *), + 2 a retransmission of an authenticated REGISTER
--          already applied: nothing is written, the reply is the bindings as they are, or STALE
--          when what the request did is no longer there (removed or replaced since)
-- Returns  {now_ms, field, packed, field, packed, ...} for every binding after the change, or an
--          error reply "STALE <key>" / "TOOMANY <count>" having written nothing.
local key = KEYS[1]
local max_contacts = tonumber(ARGV[1])
local evict = ARGV[2] == '1'
local flags = tonumber(ARGV[3]) or 0
local remove_all = flags % 2 == 1
local retransmission = math.floor(flags / 2) % 2 == 1
local call_id = ARGV[4]
local cseq = tonumber(ARGV[5])
local SEP = '\31'

-- Redis TIME, so every registrar instance agrees on "now" (DESIGN §6).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cur, expired = {}, {}
local raw = redis.call('HGETALL', key)
for i = 1, #raw, 2 do
  local f, v = raw[i], raw[i + 1]
  local ver, exp, upd, cs, cid = string.match(v, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31')
  exp = tonumber(exp)
  if ver == '1' and exp ~= nil then
    if exp <= now then
      expired[#expired + 1] = f
    else
      cur[f] = {v = v, exp = exp, upd = tonumber(upd) or 0, cseq = tonumber(cs) or 0, cid = cid}
    end
  end
  -- An entry of another version is left alone: a newer registrar may have written it.
end

-- Step 7 ordering, checked before any write: same Call-ID with a lower CSeq fails the request.
local function stale(b)
  return b ~= nil and b.cid == call_id and cseq < b.cseq
end
if remove_all then
  for f, b in pairs(cur) do
    if stale(b) then return redis.error_reply('STALE ' .. f) end
  end
end
for i = 6, #ARGV, 3 do
  if stale(cur[ARGV[i]]) then return redis.error_reply('STALE ' .. ARGV[i]) end
end

if retransmission then
  -- Answered again, as step 7 says, but from the bindings as they are: a captured copy of an
  -- authenticated REGISTER must not bring back a binding removed (or refresh one replaced) since.
  -- What this request did must still be there: its contacts bound with this Call-ID and CSeq, and
  -- what it removed no longer bound with this Call-ID (an older CSeq of it would mean the first
  -- copy never reached Redis: STALE, and the UA tries again with a new request).
  local function undone(f, b, secs)
    if secs == 0 then return b ~= nil and b.cid == call_id end
    return b == nil or b.cid ~= call_id or b.cseq ~= cseq
  end
  if remove_all then
    for f, b in pairs(cur) do
      if b.cid == call_id then return redis.error_reply('STALE ' .. f) end
    end
  end
  for i = 6, #ARGV, 3 do
    if undone(ARGV[i], cur[ARGV[i]], tonumber(ARGV[i + 1])) then
      return redis.error_reply('STALE ' .. ARGV[i])
    end
  end
  local out = {now}
  for f, b in pairs(cur) do
    out[#out + 1] = f
    out[#out + 1] = b.v
  end
  return out
end

local changed, removed, added = {}, {}, 0
if remove_all then
  for f in pairs(cur) do
    removed[f] = true
    cur[f] = nil
  end
end
for i = 6, #ARGV, 3 do
  local f, secs, tail = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local b = cur[f]
  if secs == 0 then
    if b ~= nil then
      removed[f] = true
      cur[f] = nil
      changed[f] = nil  -- bound earlier in this request: not written either
    end
  elseif b ~= nil and b.cid == call_id and b.cseq == cseq then
    -- A retransmission of a request already applied: leave the binding as it is.
  else
    if b == nil then added = added + 1 end
    local exp = now + secs * 1000
    local packed = '1' .. SEP .. string.format('%d', exp) .. SEP .. string.format('%d', now) .. SEP .. tail
    cur[f] = {v = packed, exp = exp, upd = now, cseq = cseq, cid = call_id, touched = true}
    changed[f] = packed
    removed[f] = nil
  end
end

local count = 0
for _ in pairs(cur) do count = count + 1 end
if count > max_contacts and added > 0 then
  if not evict then return redis.error_reply('TOOMANY ' .. count) end
  -- Evict the oldest bindings, those this request did not touch first.
  local list = {}
  for f, b in pairs(cur) do list[#list + 1] = {f = f, b = b} end
  table.sort(list, function(x, y)
    local tx, ty = x.b.touched and 1 or 0, y.b.touched and 1 or 0
    if tx ~= ty then return tx < ty end
    if x.b.upd ~= y.b.upd then return x.b.upd < y.b.upd end
    return x.f < y.f
  end)
  local i = 1
  while count > max_contacts do
    local f = list[i].f
    cur[f] = nil
    changed[f] = nil
    removed[f] = true
    count = count - 1
    i = i + 1
  end
end

for _, f in ipairs(expired) do removed[f] = true end
local dels = {}
for f in pairs(removed) do dels[#dels + 1] = f end
if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
local sets = {}
for f, v in pairs(changed) do
  sets[#sets + 1] = f
  sets[#sets + 1] = v
end
if #sets > 0 then redis.call('HSET', key, unpack(sets)) end

local out, latest = {now}, 0
for f, b in pairs(cur) do
  out[#out + 1] = f
  out[#out + 1] = b.v
  if b.exp > latest then latest = b.exp end
end
if count > 0 then
  -- The key's own expiry bounds garbage: the latest binding's expiry (DESIGN §6). An emptied hash
  -- is deleted by Redis itself.
  redis.call('PEXPIREAT', key, latest)
end
return out
