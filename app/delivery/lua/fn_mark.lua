local function mark(key, id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, now + 300000, id)
  redis.call('PEXPIRE', key, 300000)
end
