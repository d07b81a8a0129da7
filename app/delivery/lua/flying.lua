if #ARGV == 0 then
  return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', now, 'LIMIT', 0, 100)
end
local out = {}
local scores = redis.call('ZMSCORE', KEYS[1], unpack(ARGV))
for i, sc in ipairs(scores) do
  if sc and tonumber(sc) > now then out[#out + 1] = ARGV[i] end
end
return out