-- Removes one connection (a no-op, -1, if it was removed already).
-- KEYS: uconn, iconn, online. ARGV: instance, conn id.
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return -1 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DECR', KEYS[3]) end
return n
