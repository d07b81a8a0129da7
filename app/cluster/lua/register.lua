-- Records one connection. KEYS: uconn, then on a single Redis iconn and
-- online. ARGV: instance, conn id, info. Returns the user's connections
-- on the instance (0: the connection was recorded already). On a cluster
-- iconn and online are in other slots: the caller recorded the connection
-- in iconn first, and the script returns {connections, 1 if the user was
-- offline} for the caller to count in online.
local whole = #KEYS == 3
if whole and redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local first = n == 1 and redis.call('HLEN', KEYS[1]) == 1
if not whole then return {n, first and 1 or 0} end
if first then redis.call('INCR', KEYS[3]) end
return n
