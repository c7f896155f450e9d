local m = redis.call('HMGET', KEYS[1], 'sid', 'v', 'seen', 'ps')
if m[1] ~= ARGV[1] then return -1 end
if m[2] == ARGV[2] and m[3] == ARGV[3] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return 1
end
local k = tonumber(ARGV[4]) - tonumber(m[4] or '0')
if k > 0 then
  redis.call('LTRIM', KEYS[3], k, -1)
  redis.call('HINCRBY', KEYS[1], 'ps', k)
end
return 0
