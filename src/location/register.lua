-- sip-redirect: apply one REGISTER to one AOR atomically (RFC 3261 §10.3 steps 6-8, DESIGN §5-6).
-- KEYS[1]  sipr:loc:{aor}
-- KEYS[2]  sipr:events (stream), KEYS[3] sipr:stats (hash: aors, bindings), KEYS[4] sipr:expiry
--          (sorted set: aor scored expiry_ms * 1024 + stored bindings (at most 1023)); all three
--          or none. Without them (Redis Cluster, where they would sit in other slots) the event is
--          PUBLISHed on the channel sipr:events and no counts or expiry index are kept.
-- ARGV     max_contacts, evict (0|1), flags, call_id, cseq, then per contact:
--          binding key, expires seconds (0 removes), packed tail (cseq onwards)
--          flags: 1 remove all (Contact: *), + 2 a retransmission of an authenticated REGISTER
--          already applied: nothing is written, the reply is the bindings as they are, or STALE
--          when what the request did is no longer there (removed or replaced since),
--          + 4 by the operator (sip-locctl: no Call-ID/CSeq ordering), + 8 the expiry sweep
--          (no contacts: only expired bindings are pruned), + 16 events off (sip-registrard
--          --events off: with KEYS[1] only, nothing is published and no counts are kept)
-- Events   every call that changes the hash appends one event (src/location/README.md, "Events"):
--          v, aor, at (Redis TIME ms), src (registrar|locctl|sweep), all (1: every binding
--          removed on request), bindings (stored after), changes (JSON array of {kind, key,
--          contact, expires}; kind added|refreshed|removed|evicted|expired). A call that changes
--          nothing appends nothing.
-- Returns  {now_ms, field, packed, field, packed, ...} for every binding after the change, or an
--          error reply "STALE <key>" / "TOOMANY <count>" having written nothing.
local key = KEYS[1]
local max_contacts = tonumber(ARGV[1])
local evict = ARGV[2] == '1'
local flags = tonumber(ARGV[3]) or 0
local remove_all = flags % 2 == 1
local retransmission = math.floor(flags / 2) % 2 == 1
local by_operator = math.floor(flags / 4) % 2 == 1
local sweep = math.floor(flags / 8) % 2 == 1
local silent = math.floor(flags / 16) % 2 == 1
local events_key, stats_key, expiry_key = KEYS[2], KEYS[3], KEYS[4]
local aor = string.sub(key, 11, -2)  -- 'sipr:loc:{' .. aor .. '}'
local EVENTS_MAXLEN = '100000'
local call_id = ARGV[4]
local cseq = tonumber(ARGV[5])
local SEP = '\31'

-- Redis TIME, so every registrar instance agrees on "now" (DESIGN §6).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cur, expired, old, live = {}, {}, {}, {}
local stored = 0  -- version-1 entries before the change, expired ones included
local raw = redis.call('HGETALL', key)
for i = 1, #raw, 2 do
  local f, v = raw[i], raw[i + 1]
  local ver, exp, upd, cs, cid = string.match(v, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31')
  exp = tonumber(exp)
  if ver == '1' and exp ~= nil then
    stored = stored + 1
    old[f] = v
    if exp <= now then
      expired[#expired + 1] = f
    else
      cur[f] = {v = v, exp = exp, upd = tonumber(upd) or 0, cseq = tonumber(cs) or 0, cid = cid}
      live[f] = true
    end
  end
  -- An entry of another version is left alone: a newer registrar may have written it.
end

-- Step 7 ordering, checked before any write: same Call-ID with a lower CSeq fails the request.
local function stale(b)
  return not by_operator and b ~= nil and b.cid == call_id and cseq < b.cseq
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
local evicted = {}
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
    evicted[f] = true
    count = count - 1
    i = i + 1
  end
end

local expired_set = {}
for _, f in ipairs(expired) do
  if not changed[f] then expired_set[f] = true end
  removed[f] = true
end
local out, latest, earliest = {now}, 0, nil
for f, b in pairs(cur) do
  out[#out + 1] = f
  out[#out + 1] = b.v
  if b.exp > latest then latest = b.exp end
  if earliest == nil or b.exp < earliest then earliest = b.exp end
end

-- One event for the whole change, in the same script as the change (written below, after it).
local changes = {}
local function contact_of(v)
  local exp, c = string.match(v, '^[^\31]*\31([^\31]*)\31[^\31]*\31[^\31]*\31[^\31]*\31([^\31]*)')
  return c or '', tonumber(exp) or 0
end
local function note(kind, f, v)
  local c, exp = contact_of(v)
  changes[#changes + 1] = {kind = kind, key = f, contact = c, expires = exp}
end
for f, v in pairs(changed) do
  if live[f] then
    note('refreshed', f, v)
  else
    note('added', f, v)
  end
end
for f in pairs(removed) do
  if changed[f] == nil then
    local kind = 'removed'
    if expired_set[f] then kind = 'expired' elseif evicted[f] then kind = 'evicted' end
    note(kind, f, old[f] or '')
  end
end
-- The expiry index says whether this AOR's bindings are in the counts: every change through this
-- script since the counts began leaves it there while the AOR has bindings. Without it (data from
-- before the counts) what the hash holds is counted from now on. An AOR with bindings left learns
-- it from ZADD's reply below (1: it was not indexed); ZSCORE is asked only when nothing is stored.
local indexed, lost = nil, 0
if expiry_key ~= nil and stored == 0 then
  local score = redis.call('ZSCORE', expiry_key, aor)
  indexed = score ~= false and score ~= nil
  if indexed then
    -- The AOR's whole key expired in Redis (its latest binding passed) before the sweep or a
    -- REGISTER saw it: those bindings are reported now, without their keys.
    lost = tonumber(score) % 1024
    changes[#changes + 1] = {kind = 'expired', key = '', contact = '', expires = math.floor(tonumber(score) / 1024), count = lost}
  end
end

if expiry_key ~= nil and #changes > 0 then
  if count == 0 then
    if indexed == nil then indexed = redis.call('ZREM', expiry_key, aor) == 1
    elseif indexed then redis.call('ZREM', expiry_key, aor) end
  else
    local fresh = redis.call('ZADD', expiry_key, string.format('%d', earliest * 1024 + math.min(count, 1023)), aor)
    if indexed == nil then indexed = fresh == 0 end
  end
  local before = indexed and (stored + lost) or 0
  if count ~= before then redis.call('HINCRBY', stats_key, 'bindings', count - before) end
  local da = (count > 0 and 1 or 0) - (before > 0 and 1 or 0)
  if da ~= 0 then redis.call('HINCRBY', stats_key, 'aors', da) end
end
if #changes > 0 and not silent then
  local src = (sweep and 'sweep') or (by_operator and 'locctl') or 'registrar'
  local all = (remove_all and count == 0) and '1' or '0'
  if events_key ~= nil then
    redis.call('XADD', events_key, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'v', '1', 'aor', aor,
               'at', string.format('%d', now), 'src', src, 'all', all,
               'bindings', string.format('%d', count), 'changes', cjson.encode(changes))
  else
    -- Redis Cluster: Pub/Sub, which Cluster forwards to every node; the message is one JSON
    -- object with the same fields (changes as an array, not a string).
    redis.call('PUBLISH', 'sipr:events', cjson.encode({v = '1', aor = aor,
               at = string.format('%d', now), src = src, all = all,
               bindings = string.format('%d', count), changes = changes}))
  end
end

-- The counts, then the event, then the hash: a command that fails (a key of another type) ends
-- the script before the next, so the hash never changes without its event, and the REGISTER gets
-- the error. HDEL, HSET and PEXPIREAT cannot fail on a key HGETALL read.
local dels = {}
for f in pairs(removed) do dels[#dels + 1] = f end
if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
local sets = {}
for f, v in pairs(changed) do
  sets[#sets + 1] = f
  sets[#sets + 1] = v
end
if #sets > 0 then redis.call('HSET', key, unpack(sets)) end

if count > 0 then
  -- The key's own expiry bounds garbage: the latest binding's expiry (DESIGN §6). An emptied hash
  -- is deleted by Redis itself.
  redis.call('PEXPIREAT', key, latest)
end
return out
