-- Applies a user's events of one partition above the user's watermark,
-- each event once by its id within the deduplication window.
-- KEYS: m, h, p, s, d. ARGV: [1] the watermark field, [2] the history cap,
-- [3] now (ms), [4] the epoch, [5] the bound of the user's own counts (0:
-- none), [6] the window in events (0: no deduplication by id), [7] the
-- decay half-life in ms (0: none), then per event: offset, the encoded
-- event, the user-arm field, its 16-byte record (8 bytes of the id's hash,
-- 8 of the position's: topic, partition, offset), and its event time (ms).
--
-- With a half-life, each arm of the user's own counts (KEYS[4]) also keeps
-- its latest event time (field "<arm>\31t") and its decayed counts as of
-- that time ("<arm>\31d<type>"), as the arms' hashes do.
--
-- The window (KEYS[5]) is a ring of 17-byte records: the record and a
-- flag, 'c' when that position counted, 'd' when it was a duplicate of an
-- id seen before; the session's field dc counts the records ever written,
-- so the next one goes to slot dc mod window, over the oldest. An event
-- above the watermark is a duplicate when its id has a record; either way
-- its decision is recorded. An event at or below the watermark (a
-- redelivery, a replay) is not applied again, and its decision is read
-- back by its position: past the window, a position counts, as it did by
-- offset alone.
--
-- Returns -1 (no session), -2 (another epoch), or {applied, session id,
-- events pending, {offsets decided duplicates}}.
local m = redis.call('HMGET', KEYS[1], 'l', 'ep')
if m[1] ~= '1' then return -1 end
if m[2] ~= ARGV[4] then return -2 end
local wm = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local window = tonumber(ARGV[6])
local ring, dc = '', 0
if window > 0 then
  ring = redis.call('GET', KEYS[5]) or ''
  dc = tonumber(redis.call('HGET', KEYS[1], 'dc') or '0')
  if #ring > 0 and #ring ~= 17 * math.min(dc, window) then
    -- The window changed size: the records oldest first, the newest
    -- window of them kept; the next record then goes after them.
    local cut = (dc % (#ring / 17)) * 17
    ring = string.sub(ring, cut + 1) .. string.sub(ring, 1, cut)
    if #ring > 17 * window then ring = string.sub(ring, #ring - 17 * window + 1) end
    redis.call('SET', KEYS[5], ring)
    dc = #ring / 17
    redis.call('HSET', KEYS[1], 'dc', string.format('%d', dc))
  end
end
-- The ring as read (ring) goes stale as this batch writes: over marks the
-- slots written since, fresh the slot of each id this batch wrote last,
-- slotid the id this batch wrote in a slot. So each decision sees exactly
-- the latest window records, however the events are batched.
local over, fresh, slotid, wrote, grow = {}, {}, {}, false, {}

-- flush writes the records of a ring still growing at once: SET sizes
-- the string exactly, where SETRANGE and APPEND leave it room to grow.
local function flush()
  if #grow > 0 then
    redis.call('SET', KEYS[5], ring .. table.concat(grow))
    grow = {}
  end
end

-- at returns the flag of the record read whose bytes [from, from + 8)
-- equal key, aligned on a record and not overwritten since, or nil.
local function at(key, from)
  local init = 1
  while true do
    local i = string.find(ring, key, init, true)
    if not i then return nil end
    if (i - from) % 17 == 0 and not over[(i - from) / 17] then
      return string.sub(ring, i - from + 17, i - from + 17)
    end
    init = i + 1
  end
end

-- record writes a decided event's record over the oldest.
local function record(id, rec)
  local slot = dc % window
  local old = slotid[slot]
  if old and fresh[old] == slot then fresh[old] = nil end
  over[slot], slotid[slot], fresh[id] = true, id, slot
  if dc < window then
    table.insert(grow, rec)
    if dc + 1 == window then flush() end
  else
    redis.call('SETRANGE', KEYS[5], slot * 17, rec)
  end
  dc = dc + 1
  wrote = true
end

local hl = tonumber(ARGV[7])
local last, events, counts, fields, dups, times = wm, {}, {}, {}, {}, {}
for i = 8, #ARGV, 5 do
  local off = tonumber(ARGV[i])
  local rec = ARGV[i + 3]
  if off > wm then
    local dup = false
    if window > 0 then
      local id = string.sub(rec, 1, 8)
      dup = fresh[id] ~= nil or at(id, 1) ~= nil
      if dup then record(id, rec .. 'd') else record(id, rec .. 'c') end
    end
    if dup then
      table.insert(dups, off)
    else
      table.insert(events, ARGV[i + 1])
      local f = ARGV[i + 2]
      if counts[f] == nil then table.insert(fields, f); counts[f] = 0; times[f] = {} end
      counts[f] = counts[f] + 1
      table.insert(times[f], tonumber(ARGV[i + 4]))
    end
    if off > last then last = off end
  elseif window > 0 and at(string.sub(rec, 9, 16), 9) == 'd' then
    table.insert(dups, off)
  end
end
flush()
if wrote then redis.call('HSET', KEYS[1], 'dc', string.format('%d', dc)) end
local applied = #events
if applied > 0 then
  -- One command per list (per 1000 events: unpack has a stack limit) and
  -- per distinct arm, however many events.
  for j = 1, applied, 1000 do
    local k = math.min(j + 999, applied)
    redis.call('LPUSH', KEYS[2], unpack(events, j, k))
    redis.call('RPUSH', KEYS[3], unpack(events, j, k))
  end
  -- The user's own counts are bounded (ARGV[5], 0: none): past the bound
  -- only those the user already has grow. A count is new when HINCRBY
  -- returns the increment, as counts only grow.
  local room = tonumber(ARGV[5])
  local n = 0
  if room > 0 then n = redis.call('HLEN', KEYS[4]) end
  -- decayed: per arm, its latest event time and decayed counts, read
  -- once, brought forward event by event, written once.
  local decayed, arms = {}, {}
  local function observe(f)
    local arm, ty = string.match(f, '^(.*)\031(%d)$')
    local d = decayed[arm]
    if d == nil then
      local was = redis.call('HMGET', KEYS[4], arm .. '\031t', arm .. '\031d0', arm .. '\031d1', arm .. '\031d2',
        arm .. '\031d3', arm .. '\031d4')
      d = {t = tonumber(was[1] or '0')}
      for j = 0, 4 do d[j] = tonumber(was[j + 2] or '0') end
      decayed[arm] = d
      table.insert(arms, arm)
    end
    ty = tonumber(ty)
    for _, t in ipairs(times[f]) do
      if t > d.t then
        local fo = 2 ^ ((d.t - t) / hl)
        for j = 0, 4 do d[j] = d[j] * fo end
        d[ty] = d[ty] + 1
        d.t = t
      else
        d[ty] = d[ty] + 2 ^ ((t - d.t) / hl)
      end
    end
  end
  for _, f in ipairs(fields) do
    if room == 0 or n < room or redis.call('HEXISTS', KEYS[4], f) == 1 then
      if redis.call('HINCRBY', KEYS[4], f, counts[f]) == counts[f] then n = n + 1 end
      if hl > 0 then observe(f) end
    end
  end
  for _, arm in ipairs(arms) do
    local d, set = decayed[arm], {arm .. '\031t', string.format('%d', decayed[arm].t)}
    for j = 0, 4 do
      if d[j] ~= 0 then
        table.insert(set, arm .. '\031d' .. j)
        table.insert(set, string.format('%.17g', d[j]))
      end
    end
    redis.call('HSET', KEYS[4], unpack(set))
  end
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
  redis.call('HINCRBY', KEYS[1], 'pe', applied)
end
if last > wm then
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', last), 'seen', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'v', 1)
else
  redis.call('HSET', KEYS[1], 'seen', ARGV[3])
end
-- The session id names the user's entry in the partition's pending set;
-- the events still pending say whether the session is due for a flush.
local t = redis.call('HMGET', KEYS[1], 'sid', 'ps', 'pe')
return {applied, t[1] or '', tonumber(t[3] or '0') - tonumber(t[2] or '0'), dups}
