-- Counts one connection of agent on inst less. ARGV: P, seed, agent,
-- inst, now ms. Returns 1 when the agent has no connection left.
local agent, inst, now = ARGV[3], ARGV[4], tonumber(ARGV[5])
local k = P .. 'aconn:' .. agent
if redis.call('HINCRBY', k, inst, -1) <= 0 then
  redis.call('HDEL', k, inst)
  redis.call('SREM', P .. 'inst:' .. inst, agent)
end
if redis.call('EXISTS', k) == 1 then return 0 end
redis.call('ZREM', P .. 'avail', agent)
redis.call('SREM', P .. 'connected', agent)
redis.call('ZADD', P .. 'gone', now, agent)
return 1
