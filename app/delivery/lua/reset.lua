redis.call('DEL', KEYS[1])
bump(KEYS[2])
return 1