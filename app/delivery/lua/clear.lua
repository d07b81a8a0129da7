local users = #KEYS / 3
local at = users
local late = {}
for u = 1, users do
  local n = tonumber(ARGV[u])
  redis.call('ZREM', KEYS[3*u-2], unpack(ARGV, at + 1, at + n))
  bump(KEYS[3*u-1])
  if redis.call('EXISTS', KEYS[3*u]) == 1 then -- a read gave up waiting for some of these
    for i = at + 1, at + n do
      if redis.call('SISMEMBER', KEYS[3*u], ARGV[i]) == 1 then late[#late + 1] = ARGV[i] end
    end
  end
  at = at + n
end
return late
