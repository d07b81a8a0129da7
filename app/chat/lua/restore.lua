-- Puts one live conversation back after Redis lost the chat's state.
-- ARGV: P, seed, cid, user, agent or '', opened ms.
local cid, uid, agent, opened = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local k = P .. 'conv:' .. cid
if redis.call('EXISTS', k) == 1 then return 0 end
redis.call('SET', P .. 'user:' .. uid, cid)
redis.call('INCR', P .. 'nconv')
if agent ~= '' then
  redis.call('HSET', k, 'user', uid, 'status', 'open', 'opened', opened, 'agent', agent)
  redis.call('SADD', P .. 'held:' .. agent, cid)
  sync_load(agent)
else
  redis.call('HSET', k, 'user', uid, 'status', 'waiting', 'opened', opened)
  redis.call('ZADD', KEYS[1], opened, cid)
end
return 1
