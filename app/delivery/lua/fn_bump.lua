local function bump(key)
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, 86400000) end
end
