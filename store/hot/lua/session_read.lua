if redis.call('HGET', KEYS[1], 'l') ~= '1' then return {'0'} end
local out = {'1'}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(out, v) end
table.insert(out, '|')
for _, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do table.insert(out, v) end
table.insert(out, '|')
for _, v in ipairs(redis.call('HGETALL', KEYS[3])) do table.insert(out, v) end
return out
