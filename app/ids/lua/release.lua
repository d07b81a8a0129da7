-- Deletes a lease only if it is ours. KEYS: the lease. ARGV: the instance.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
