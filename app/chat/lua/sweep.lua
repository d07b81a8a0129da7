-- Forgets the agent connections of a dead instance. ARGV: P, seed, inst,
-- now ms. Returns the agents left with no connection.
local inst, now = ARGV[3], tonumber(ARGV[4])
local out = {}
for _, a in ipairs(redis.call('SMEMBERS', P .. 'inst:' .. inst)) do
  local k = P .. 'aconn:' .. a
  redis.call('HDEL', k, inst)
  if redis.call('EXISTS', k) == 0 then
    redis.call('ZREM', P .. 'avail', a)
    redis.call('SREM', P .. 'connected', a)
    redis.call('ZADD', P .. 'gone', now, a)
    out[#out + 1] = a
  end
end
redis.call('DEL', P .. 'inst:' .. inst)
redis.call('SREM', P .. 'insts', inst)
return out
