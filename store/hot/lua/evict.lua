-- Evicts the session read (ARGV[1] its id) if nothing changed since (same
-- version ARGV[2] and last activity ARGV[3]) and ARGV[5] is not '1' (a
-- flush that keeps the session). Otherwise drops from the pending list the
-- events before sequence number ARGV[4], which are in the cold tier now.
-- Returns {1, 0} evicted, {0, pending events left} kept, {-1, 0} when the
-- session is another one.
local m = redis.call('HMGET', KEYS[1], 'sid', 'v', 'seen', 'ps', 'pe')
if m[1] ~= ARGV[1] then return {-1, 0} end
if ARGV[5] ~= '1' and m[2] == ARGV[2] and m[3] == ARGV[3] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  return {1, 0}
end
local ps = tonumber(m[4] or '0')
local k = tonumber(ARGV[4]) - ps
if k > 0 then
  redis.call('LTRIM', KEYS[3], k, -1)
  redis.call('HINCRBY', KEYS[1], 'ps', k)
  ps = ps + k
end
return {0, tonumber(m[5] or '0') - ps}
