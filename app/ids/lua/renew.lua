-- Extends this instance's lease of an id node while it is still ours, or
-- takes it back when nobody holds it; 0 means another instance has it.
-- KEYS: the lease. ARGV: the instance, the lease's life in ms.
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0 end
return 0
