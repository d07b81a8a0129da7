-- Closes conversation cid. ARGV: P, seed, cid.
-- Returns {} when it is not live, else {user, agent or '', status}.
local cid = ARGV[3]
local k = P .. 'conv:' .. cid
local c = redis.call('HMGET', k, 'user', 'agent', 'status')
if not c[1] then return {} end
if c[2] then
  redis.call('SREM', P .. 'held:' .. c[2], cid)
  sync_load(c[2])
end
redis.call('ZREM', KEYS[1], cid)
if redis.call('GET', P .. 'user:' .. c[1]) == cid then redis.call('DEL', P .. 'user:' .. c[1]) end
redis.call('DEL', k)
redis.call('DECR', P .. 'nconv')
return {c[1], c[2] or '', c[3]}
