-- Drops a dead instance from one user. KEYS: uconn, online. ARGV: instance.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DECR', KEYS[2])
end
return 1
