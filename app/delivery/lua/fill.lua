local v0 = table.remove(ARGV, 1)
if redis.call('EXISTS', KEYS[1]) == 0 then
  if (redis.call('GET', KEYS[2]) or '0') ~= v0 or redis.call('ZCOUNT', KEYS[3], now, '+inf') > 0 then
    return {}
  end
  redis.call('HSET', KEYS[1], unpack(ARGV))
  redis.call('EXPIRE', KEYS[1], 86400)
end
return redis.call('HGETALL', KEYS[1])