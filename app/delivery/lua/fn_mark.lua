local function mark(key, id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, now + 60000, id)
  redis.call('PEXPIRE', key, 60000)
end
