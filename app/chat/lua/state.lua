-- Reads what the live state says of conversations, for the loop's
-- repair of MySQL. ARGV: P, seed, cid, cid, ...
-- Returns {built ('1' or '0'), then per cid: status ('' when it is not
-- live), agent, reason, at}.
local out = {tostring(redis.call('EXISTS', P .. 'built'))}
for i = 3, #ARGV do
  local c = redis.call('HMGET', P .. 'conv:' .. ARGV[i], 'status', 'agent', 'reason', 'at')
  for j = 1, 4 do out[#out + 1] = c[j] or '' end
end
return out
