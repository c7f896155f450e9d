if redis.call('HGET', KEYS[1], 'l') ~= '1' then return {'0'} end
redis.call('HSET', KEYS[1], 'seen', ARGV[1])
local out = redis.call('HGETALL', KEYS[2])
table.insert(out, 1, '1')
return out
