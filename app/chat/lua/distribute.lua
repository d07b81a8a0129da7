-- Hands out waiting conversations, longest waiting first, each to the
-- least loaded available agent with room. ARGV: P, seed, now ms,
-- capacity, most to hand out.
-- Returns {'settle', ms left} or {'ok', cid, agent, cid, agent, ...}.
local now, cap, most = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local left = tonumber(redis.call('GET', P .. 'settle') or '0') - now
if left > 0 then return {'settle', tostring(left)} end
local out = {'ok'}
for _, cid in ipairs(redis.call('ZRANGE', KEYS[1], 0, most - 1)) do
  local a = pick(cap, nil)
  if not a then break end
  give(cid, a, 'backlog', ARGV[3])
  out[#out + 1] = cid
  out[#out + 1] = a
end
return out
