-- Records one connection. KEYS: uconn, iconn, online. ARGV: instance,
-- conn id, info. Returns the user's connections on the instance (0: the
-- connection was recorded already).
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if n == 1 and redis.call('HLEN', KEYS[1]) == 1 then redis.call('INCR', KEYS[3]) end
return n
