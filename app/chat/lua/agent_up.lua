-- Counts one more connection of agent on instance inst.
-- ARGV: P, seed, agent, inst, name, now ms, settle ms.
-- Returns {status, load, available now for the first time (1/0)}.
local agent, inst, name, now, settle = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('HINCRBY', P .. 'aconn:' .. agent, inst, 1)
redis.call('SADD', P .. 'inst:' .. inst, agent)
redis.call('SADD', P .. 'insts', inst)
redis.call('ZREM', P .. 'gone', agent)
redis.call('SADD', P .. 'connected', agent)
local st = redis.call('HGET', P .. 'agent:' .. agent, 'status') or 'online'
redis.call('HSET', P .. 'agent:' .. agent, 'name', name, 'status', st)
local fresh = 0
if st == 'online' and not redis.call('ZSCORE', P .. 'avail', agent) then
  redis.call('ZADD', P .. 'avail', load_of(agent), agent)
  open_settle(now, settle)
  fresh = 1
end
return {st, load_of(agent), fresh}
