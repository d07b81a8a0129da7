-- Removes one connection (a no-op, -1, if it was removed already).
-- KEYS: uconn, then on a single Redis iconn and online. ARGV: instance,
-- conn id. On a cluster the caller removed it from iconn first, and the
-- script returns {connections left on the instance, 1 if the user has none
-- left anywhere} for the caller to count in online.
local whole = #KEYS == 3
if whole and redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return -1 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
local gone = redis.call('EXISTS', KEYS[1]) == 0
if not whole then return {n, gone and 1 or 0} end
if gone then redis.call('DECR', KEYS[3]) end
return n
