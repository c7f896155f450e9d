-- The session's deduplication window (oldest record first), meta hash and
-- user-arm counts, without the pending events: those are read in bounded
-- chunks by pending_chunk.lua. KEYS: m, s, d.
if redis.call('HGET', KEYS[1], 'l') ~= '1' then return {'0'} end
local ring = redis.call('GET', KEYS[3]) or ''
if #ring > 0 then
  local cut = (tonumber(redis.call('HGET', KEYS[1], 'dc') or '0') % (#ring / 17)) * 17
  ring = string.sub(ring, cut + 1) .. string.sub(ring, 1, cut)
end
local out = {'1', ring}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(out, v) end
table.insert(out, '|')
for _, v in ipairs(redis.call('HGETALL', KEYS[2])) do table.insert(out, v) end
return out
