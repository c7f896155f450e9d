-- The session's deduplication window, meta hash and user-arm counts,
-- without the pending events: those are read in bounded chunks by
-- pending_chunk.lua. KEYS: m, s, d.
if redis.call('HGET', KEYS[1], 'l') ~= '1' then return {'0'} end
local out = {'1', redis.call('GET', KEYS[3]) or ''}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(out, v) end
table.insert(out, '|')
for _, v in ipairs(redis.call('HGETALL', KEYS[2])) do table.insert(out, v) end
return out
