-- Opens conversation cid for user uid: sticky, else least loaded, else
-- waiting. ARGV: P, seed, cid, uid, now ms, capacity.
-- Returns {'exists', cid} | {'sticky'|'least_loaded', agent} | {'queued', position}.
local cid, uid, now, cap = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local cur = redis.call('GET', P .. 'user:' .. uid)
if cur then return {'exists', cur} end
redis.call('SET', P .. 'user:' .. uid, cid)
redis.call('HSET', P .. 'conv:' .. cid, 'user', uid, 'status', 'waiting', 'opened', now)
redis.call('INCR', P .. 'nconv')
local prev = redis.call('GET', P .. 'last:' .. uid)
if prev then
  local s = redis.call('ZSCORE', P .. 'avail', prev)
  if s and tonumber(s) < cap then
    give(cid, prev, 'sticky', ARGV[5])
    return {'sticky', prev}
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 and not settling(now) then
  local a = pick(cap, nil)
  if a then
    give(cid, a, 'least_loaded', ARGV[5])
    return {'least_loaded', a}
  end
end
redis.call('ZADD', KEYS[1], now, cid)
return {'queued', tostring(redis.call('ZRANK', KEYS[1], cid) + 1)}
