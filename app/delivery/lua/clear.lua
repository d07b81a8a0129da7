local users = #KEYS / 2
local at = users
for u = 1, users do
  local n = tonumber(ARGV[u])
  redis.call('ZREM', KEYS[2*u-1], unpack(ARGV, at + 1, at + n))
  bump(KEYS[2*u])
  at = at + n
end
return 1