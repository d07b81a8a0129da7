-- Takes the conversations whose announcement failed (P..'tell', cid →
-- ms it was noted) that are live, to be announced again. One not live
-- stays noted up to max age (an open whose answer was lost may still
-- land), then is forgotten. ARGV: P, seed, now ms, max age ms.
-- Returns the cids taken.
local now, age = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = P .. 'tell'
local out = {}
local all = redis.call('HGETALL', t)
for i = 1, #all, 2 do
  local cid = all[i]
  if redis.call('EXISTS', P .. 'conv:' .. cid) == 1 then
    redis.call('HDEL', t, cid)
    out[#out + 1] = cid
  elseif now - tonumber(all[i + 1]) > age then
    redis.call('HDEL', t, cid)
  end
end
return out
