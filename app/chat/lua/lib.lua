-- Shared by every chat script (prepended when the script is built).
-- ARGV[1] is the key prefix (with the {chat} hash tag), ARGV[2] a random
-- seed for ties. KEYS[1] is P..'waiting', named so a cluster routes the
-- call to the chat's slot; every key below shares its hash tag.
local P = ARGV[1]
local seed = tonumber(ARGV[2]) or 1

local function load_of(agent) return redis.call('SCARD', P .. 'held:' .. agent) end

-- The avail score is the agent's load, for available agents only.
local function sync_load(agent)
  redis.call('ZADD', P .. 'avail', 'XX', load_of(agent), agent)
end

-- pick returns the least loaded available agent under cap other than
-- except, ties at random, or nil.
local function pick(cap, except)
  local lo = '-inf'
  while true do
    local m = redis.call('ZRANGEBYSCORE', P .. 'avail', lo, '(' .. cap, 'WITHSCORES', 'LIMIT', 0, 1)
    if #m == 0 then return nil end
    local s = m[2]
    local cands = {}
    for _, a in ipairs(redis.call('ZRANGEBYSCORE', P .. 'avail', s, s)) do
      if a ~= except then cands[#cands + 1] = a end
    end
    if #cands > 0 then
      seed = (seed * 1103515245 + 12345) % 2147483648
      return cands[(seed % #cands) + 1]
    end
    lo = '(' .. s
  end
end

-- give hands conversation cid to agent at now (ms), for reason (a
-- chat_holds reason): both are kept, so that a hand-out MySQL failed to
-- record can be recorded later just as it happened.
local function give(cid, agent, reason, now)
  local k = P .. 'conv:' .. cid
  redis.call('SADD', P .. 'held:' .. agent, cid)
  sync_load(agent)
  redis.call('HSET', k, 'agent', agent, 'status', 'open', 'reason', reason, 'at', now)
  redis.call('ZREM', P .. 'waiting', cid)
  local uid = redis.call('HGET', k, 'user')
  if uid then redis.call('SET', P .. 'last:' .. uid, agent, 'EX', 2592000) end
end

local function settling(now)
  return tonumber(redis.call('GET', P .. 'settle') or '0') > now
end

-- open_settle starts a settle window unless one is running.
local function open_settle(now, ms)
  if not settling(now) then redis.call('SET', P .. 'settle', now + ms, 'PX', ms + 60000) end
end
