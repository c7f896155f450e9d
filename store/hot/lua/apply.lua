if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[4] then return {2, ''} end
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or '-1'
if cur ~= ARGV[2] then return {0, cur} end
local fields = {'i', 'c', 'w', 'a', 'o'}
local decayed = {'di', 'dc', 'dw', 'da', 'do'}
-- With a half-life (ms, ARGV[5]), each arm's decayed counts are kept as of
-- its latest event t: both the stored ones and the batch's are brought to
-- the later of their times before they add up.
local hl = tonumber(ARGV[5])
local per = 6
if hl > 0 then per = 11 end
for k = 3, #KEYS do
  local b = 6 + (k - 3) * per
  -- Every arm has t once written: an arm without it is new to the index.
  local old = redis.call('HGET', KEYS[k], 't')
  if not old then redis.call('SADD', KEYS[2], KEYS[k]) end
  for f = 1, 5 do
    local n = ARGV[b + f - 1]
    if n ~= '0' then redis.call('HINCRBY', KEYS[k], fields[f], n) end
  end
  local t, told = tonumber(ARGV[b + 5]), tonumber(old or '0')
  if hl > 0 then
    local at = math.max(t, told)
    local fo, fn = 2 ^ ((told - at) / hl), 2 ^ ((t - at) / hl)
    local was, set = redis.call('HMGET', KEYS[k], unpack(decayed)), {}
    for f = 1, 5 do
      local v = tonumber(was[f] or '0') * fo + tonumber(ARGV[b + 5 + f]) * fn
      if v ~= 0 or was[f] then
        table.insert(set, decayed[f])
        table.insert(set, string.format('%.17g', v))
      end
    end
    if #set > 0 then redis.call('HSET', KEYS[k], unpack(set)) end
  end
  if t > told then redis.call('HSET', KEYS[k], 't', ARGV[b + 5]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {1, ARGV[3]}
