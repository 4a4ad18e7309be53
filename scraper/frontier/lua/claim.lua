-- ARGV: limit -> {1 taken / 0 none left, claimed}
local c = tonumber(redis.call('GET', P .. 'claimed') or '0')
if c >= tonumber(ARGV[1]) then return {0, c} end
return {1, redis.call('INCR', P .. 'claimed')}
