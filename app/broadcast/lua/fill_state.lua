-- Stores a set or hash (KEYS[1]) with a TTL unless the user's broadcast
-- state version (KEYS[2]) moved from ARGV[1]. ARGV: version, ttl ms, the
-- write command (SADD or HSET), then its arguments.
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call(ARGV[3], KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
