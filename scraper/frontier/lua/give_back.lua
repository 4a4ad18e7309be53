-- ARGV: (fp, token)... -> URLs put back in pending (still outstanding)
local n = 0
for i = 1, #ARGV, 2 do
  local l = lease_of(ARGV[i])
  if l and l.tok == ARGV[i + 1] then
    redis.call('ZADD', P .. 'pending', l.score, l.member)
    release(ARGV[i])
    n = n + 1
  end
end
return n
