local m = redis.call('HMGET', KEYS[1], 'l', 'ep')
if m[1] ~= '1' then return -1 end
if m[2] ~= ARGV[4] then return -2 end
local wm = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local last, events, counts, fields = wm, {}, {}, {}
for i = 6, #ARGV, 3 do
  local off = tonumber(ARGV[i])
  if off > wm then
    table.insert(events, ARGV[i + 1])
    local f = ARGV[i + 2]
    if counts[f] == nil then table.insert(fields, f); counts[f] = 0 end
    counts[f] = counts[f] + 1
    if off > last then last = off end
  end
end
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
  for _, f in ipairs(fields) do
    if room == 0 or n < room or redis.call('HEXISTS', KEYS[4], f) == 1 then
      if redis.call('HINCRBY', KEYS[4], f, counts[f]) == counts[f] then n = n + 1 end
    end
  end
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', last), 'seen', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'pe', applied)
  redis.call('HINCRBY', KEYS[1], 'v', 1)
else
  redis.call('HSET', KEYS[1], 'seen', ARGV[3])
end
-- The session id names the user's entry in the partition's pending set;
-- the events still pending say whether the session is due for a flush.
local t = redis.call('HMGET', KEYS[1], 'sid', 'ps', 'pe')
return {applied, t[1] or '', tonumber(t[3] or '0') - tonumber(t[2] or '0')}
