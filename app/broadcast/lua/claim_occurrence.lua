-- Claims one occurrence of a recurring broadcast. KEYS: the tick's claim,
-- then the run's (optional). ARGV: new id, the tick's TTL and the run's,
-- in s. Returns {"run", id} when this run claimed before, {"tick", id}
-- when another run took the tick (this run remembers it too), or
-- {"new", ARGV[1]}.
if #KEYS > 1 then
  local r = redis.call('GET', KEYS[2])
  if r then return {'run', r} end
end
local m = redis.call('GET', KEYS[1])
if m then
  if #KEYS > 1 then redis.call('SET', KEYS[2], m, 'EX', ARGV[3]) end
  return {'tick', m}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if #KEYS > 1 then redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3]) end
return {'new', ARGV[1]}
