-- Sets agent's status ('online' or 'away'). ARGV: P, seed, agent,
-- status, now ms, settle ms. Returns {load, connected (1/0)}.
local agent, st, now, settle = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('HSET', P .. 'agent:' .. agent, 'status', st)
local connected = redis.call('EXISTS', P .. 'aconn:' .. agent)
if st == 'away' then
  redis.call('ZREM', P .. 'avail', agent)
elseif connected == 1 and not redis.call('ZSCORE', P .. 'avail', agent) then
  redis.call('ZADD', P .. 'avail', load_of(agent), agent)
  open_settle(now, settle)
end
return {load_of(agent), connected}
