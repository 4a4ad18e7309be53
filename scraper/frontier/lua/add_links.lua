-- ARGV: (depth, member)... -> {added, outstanding}
local added = 0
for i = 1, #ARGV, 2 do
  local member = ARGV[i + 1]
  if redis.call('SADD', P .. 'seen', string.sub(member, 1, 8)) == 1 then
    local seq = redis.call('INCR', P .. 'seq')
    redis.call('ZADD', P .. 'pending', string.format('%.0f', tonumber(ARGV[i]) * 4294967296 + seq), member)
    added = added + 1
  end
end
if added > 0 then return {added, redis.call('INCRBY', P .. 'outstanding', added)} end
return {0, outstanding()}
