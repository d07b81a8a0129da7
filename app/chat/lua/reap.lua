-- Moves the conversations of agents gone longer than the grace: to the
-- least loaded available agent, or back to the waiting pool (by when
-- they were opened). ARGV: P, seed, now ms, grace ms, capacity.
-- Returns {cid, old agent, new agent or '', ...}.
local now, grace, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for _, a in ipairs(redis.call('ZRANGEBYSCORE', P .. 'gone', '-inf', now - grace)) do
  redis.call('ZREM', P .. 'gone', a)
  if redis.call('EXISTS', P .. 'aconn:' .. a) == 0 then
    for _, cid in ipairs(redis.call('SMEMBERS', P .. 'held:' .. a)) do
      redis.call('SREM', P .. 'held:' .. a, cid)
      local b = pick(cap, a)
      local k = P .. 'conv:' .. cid
      if b then
        give(cid, b, 'reassign', ARGV[3])
      else
        b = ''
        redis.call('HSET', k, 'status', 'waiting', 'at', now)
        redis.call('HDEL', k, 'agent', 'reason')
        redis.call('ZADD', KEYS[1], redis.call('HGET', k, 'opened') or now, cid)
      end
      out[#out + 1] = cid
      out[#out + 1] = a
      out[#out + 1] = b
    end
  end
end
return out
