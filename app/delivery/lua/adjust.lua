bump(KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i+1]) end
return redis.call('HGETALL', KEYS[1])