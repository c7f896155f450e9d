-- The pending events of sequence numbers [ARGV[2], ARGV[3]) of session
-- ARGV[1], or false when that session is gone. Events before the list's
-- head (ps) are in the cold tier already: another flush trimmed them.
local m = redis.call('HMGET', KEYS[1], 'sid', 'ps')
if m[1] ~= ARGV[1] then return false end
local ps = tonumber(m[2] or '0')
local from = math.max(tonumber(ARGV[2]), ps)
local to = tonumber(ARGV[3])
if to <= from then return {} end
return redis.call('LRANGE', KEYS[2], from - ps, to - ps - 1)
