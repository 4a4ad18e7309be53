-- ARGV: worker, lease_ms, member -> {token, outstanding}; token 0: seen before
local member = ARGV[3]
if redis.call('SADD', P .. 'seen', string.sub(member, 1, 8)) == 0 then return {0, outstanding()} end
local seq = redis.call('INCR', P .. 'seq')
local tok = grant(ARGV[1], string.format('%.0f', seq), member, now_ms() + tonumber(ARGV[2]))
return {tok, redis.call('INCR', P .. 'outstanding')}
