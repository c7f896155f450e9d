local out = {redis.call('HGET', KEYS[1], 'epoch') or ''}
local wm = redis.call('HGETALL', KEYS[1])
table.insert(out, tostring(#wm))
for _, v in ipairs(wm) do table.insert(out, v) end
for _, k in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  table.insert(out, k)
  for _, v in ipairs(redis.call('HMGET', k, 'i', 'c', 'w', 'a', 'o', 't', 'di', 'dc', 'dw', 'da', 'do')) do table.insert(out, v or '0') end
end
return out
