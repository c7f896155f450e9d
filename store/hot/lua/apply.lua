if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[4] then return {2, ''} end
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or '-1'
if cur ~= ARGV[2] then return {0, cur} end
local fields = {'i', 'c', 'w', 'a', 'o'}
for k = 3, #KEYS do
  local b = 5 + (k - 3) * 6
  -- Every arm has t once written: an arm without it is new to the index.
  local old = redis.call('HGET', KEYS[k], 't')
  if not old then redis.call('SADD', KEYS[2], KEYS[k]) end
  for f = 1, 5 do
    local n = ARGV[b + f - 1]
    if n ~= '0' then redis.call('HINCRBY', KEYS[k], fields[f], n) end
  end
  if tonumber(ARGV[b + 5]) > tonumber(old or '0') then redis.call('HSET', KEYS[k], 't', ARGV[b + 5]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {1, ARGV[3]}
