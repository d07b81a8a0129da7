local gen
local base = #KEYS % 6 -- 1: KEYS[1] is the broadcast generation; 0: the caller reads it (a cluster)
local out = {}
for r = 0, #ARGV / 4 - 1 do
  local k, a = base + r * 6, r * 4
  local unread, uconn, bunread, version, flying, repushed = KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4], KEYS[k+5], KEYS[k+6]
  local kind, incr, mode, id = ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4]
  local o = {{}, {}, {}, 0, 0}
  if mode == '1' then
    -- A live mark: an earlier attempt counted it (and pushed it, unless it
    -- died first). The first retry pushes it once more (for a connection
    -- made since, or a push that did not happen); later ones do not.
    local sc = redis.call('ZSCORE', flying, id)
    if sc and tonumber(sc) > now then
      local again = redis.call('ZSCORE', repushed, id)
      if again and tonumber(again) > now then
        o[5] = 1
      else
        redis.call('ZREMRANGEBYSCORE', repushed, '-inf', now)
        redis.call('ZADD', repushed, now + 300000, id)
        redis.call('PEXPIRE', repushed, 300000)
      end
    end
    mark(flying, id)
  end
  local h = redis.call('HGETALL', unread)
  if #h > 0 and incr == '1' then -- count it: both fields in one HSET, the reply patched to match
    local ki, ui
    for i = 1, #h, 2 do
      if h[i] == kind then ki = i + 1 elseif h[i] == '~unacked' then ui = i + 1 end
    end
    if not ki then h[#h + 1] = kind; h[#h + 1] = '0'; ki = #h end
    if not ui then h[#h + 1] = '~unacked'; h[#h + 1] = '0'; ui = #h end
    h[ki] = tostring(tonumber(h[ki]) + 1)
    h[ui] = tostring(tonumber(h[ui]) + 1)
    redis.call('HSET', unread, kind, h[ki], '~unacked', h[ui])
  end
  o[1] = h
  bump(version)
  if mode == '-1' then redis.call('ZREM', flying, id) end
  o[2] = redis.call('HGETALL', uconn)
  if #o[2] > 0 then
    o[3] = redis.call('HGETALL', bunread)
    if gen == nil then gen = base == 1 and tonumber(redis.call('GET', KEYS[1]) or '0') or -1 end
    o[4] = gen
  end
  out[#out + 1] = o
end
return out