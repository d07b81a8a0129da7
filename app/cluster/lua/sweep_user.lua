-- Drops a dead instance from one user. KEYS: uconn, then on a single
-- Redis online. ARGV: instance. Returns 1 when the user has no connection
-- left (on a cluster the caller then counts them out of online).
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[1]) == 0 then
  if #KEYS == 2 then redis.call('DECR', KEYS[2]) end
  return 1
end
return 0
