local ep = redis.call('HGET', KEYS[1], 'ep')
if ep and ep ~= ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  return 1
end
return 0
