-- Counts console login failures of an email and of an address.
-- ARGV: P, seed, email, address, 'try' | 'ok', window ms.
-- 'try' counts an attempt as failed before its password is checked, so
-- that attempts at once are each counted (a burst gets no more guesses
-- checked than the limit); it returns {failures of the email, of the
-- address, ms left of each count}. 'ok' takes back a right one: the
-- email's count goes, the address's loses the attempt; it returns {}.
local fe, fa = P .. 'fail:e:' .. ARGV[3], P .. 'fail:a:' .. ARGV[4]
if ARGV[5] == 'ok' then
  redis.call('DEL', fe)
  if tonumber(redis.call('GET', fa) or '0') > 0 then redis.call('DECR', fa) end
  return {}
end
local window = tonumber(ARGV[6])
local ne, na = redis.call('INCR', fe), redis.call('INCR', fa)
if ne == 1 then redis.call('PEXPIRE', fe, window) end
if na == 1 then redis.call('PEXPIRE', fa, window) end
return {ne, na, redis.call('PTTL', fe), redis.call('PTTL', fa)}
