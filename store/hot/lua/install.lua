-- Installs a session only while ARGV[1] still holds the load lock
-- (KEYS[4]): a loader whose lock expired while it stalled may have read a
-- cold state older than what another loader installed and the sweeper
-- offloaded since. Returns -1 then, 1 when installed, 0 when a session
-- was there already. KEYS: m, h, s, k, d. ARGV: token, version, now,
-- epoch, the deduplication window, then the recent events, the watermarks
-- and the user-arm counts, each list after its length.
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return -1 end
local installed = 0
if redis.call('HGET', KEYS[1], 'l') ~= '1' then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[5])
  if ARGV[5] ~= '' then redis.call('SET', KEYS[5], ARGV[5]) end
  redis.call('HSET', KEYS[1], 'l', '1', 'ep', ARGV[4], 'sid', ARGV[1], 'v', ARGV[2], 'seen', ARGV[3], 'ps', '0', 'pe', '0',
    'dc', string.format('%d', #ARGV[5] / 17))
  local i = 6
  local n = tonumber(ARGV[i]); i = i + 1
  for j = 1, n do redis.call('RPUSH', KEYS[2], ARGV[i]); i = i + 1 end
  local w = tonumber(ARGV[i]); i = i + 1
  for j = 1, w do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2 end
  while i <= #ARGV do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2 end
  installed = 1
end
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return installed
