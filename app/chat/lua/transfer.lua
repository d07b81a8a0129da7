-- Moves conversation cid from agent `from` to agent `to`, who must be
-- available (connected, not away). ARGV: P, seed, cid, from, to, now ms.
-- Returns {'gone'} | {'notyours'} | {'offline'} | {'ok', user}.
local cid, from, to = ARGV[3], ARGV[4], ARGV[5]
local k = P .. 'conv:' .. cid
local c = redis.call('HMGET', k, 'user', 'agent')
if not c[1] then return {'gone'} end
if c[2] ~= from then return {'notyours'} end
if not redis.call('ZSCORE', P .. 'avail', to) then return {'offline'} end
redis.call('SREM', P .. 'held:' .. from, cid)
sync_load(from)
give(cid, to, 'transfer', ARGV[6])
return {'ok', c[1]}
